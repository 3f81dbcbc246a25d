//! `POST /exports` as an HTML form sends it (`application/x-www-form-urlencoded`), for callers
//! that hold parameter values as text: the console, the CLI's `-p name=value`, `curl -d`. The
//! form is read here; its parameters stay text until the submission types them by the
//! declaration of a dataset the caller may use (`Access::bind_text`, as a lookup's query
//! string is), so the request is then the one a JSON body makes, checked the same way.

use super::*;
use std::borrow::Cow;

/// `POST /exports` as a form: the JSON body's fields, each parameter as `params.<name>`.
#[derive(utoipa::ToSchema)]
#[schema(
    example = "dataset=customers&params.ids=1,2,3&params.segment=BUILDING&format=csv&notify=analyst@example.com"
)]
#[allow(dead_code)] // Read by `export_request_from_form`; this is its description.
pub(super) struct ExportForm {
    dataset: String,
    format: Option<Format>,
    compression: Option<Compression>,
    archive: Option<Archive>,
    /// Addresses, comma-separated or the field repeated.
    notify: Option<Vec<String>>,
    /// `params.<name>=value` for each parameter, as text: a list comma-separated or the field
    /// repeated. An empty value is a parameter not given, as a form's empty field is.
    #[schema(rename = "params.<name>")]
    params: Option<String>,
}

/// The export request a form body makes, and its parameters as text (by name, in order).
/// Unknown fields, and a single-valued field given twice, are refused by name.
/// With `dataset` given (`POST /datasets/{name}/exports`), the form names none.
pub(super) fn export_request_from_form(
    body: &[u8],
    dataset: Option<&str>,
) -> Result<(ExportRequest, Vec<(String, String)>), ApiError> {
    let mut request = ExportRequest::default();
    let mut seen: Vec<Cow<str>> = Vec::new();
    let mut params: Vec<(String, String)> = Vec::new();
    for (name, value) in form_urlencoded::parse(body) {
        if let Some(param) = name.strip_prefix("params.") {
            // Empty ones too: the submission refuses a bound name however it is given, then
            // takes an empty field as a parameter not given.
            params.push((param.to_owned(), value.into_owned()));
            continue;
        }
        if name == "notify" {
            let addresses = value.split(',').map(str::trim).filter(|a| !a.is_empty());
            request.notify.extend(addresses.map(str::to_owned));
            continue;
        }
        if seen.contains(&name) {
            return Err(ApiError::invalid(
                &name,
                format!("'{name}' is named twice in the form; name each field once"),
            ));
        }
        let choice_error = |rule: String| ApiError::invalid(&name, format!("'{name}' {rule}"));
        match name.as_ref() {
            "dataset" if dataset.is_none() => request.dataset = value.into_owned(),
            // A form's select sends its empty choice: the default, as for a field left out.
            _ if value.is_empty() && ["format", "compression", "archive"].contains(&&*name) => {}
            "format" => request.format = value.parse().map_err(choice_error)?,
            "compression" => request.compression = value.parse().map_err(choice_error)?,
            "archive" => request.archive = value.parse().map_err(choice_error)?,
            other => {
                return Err(ApiError::invalid(
                    other,
                    format!(
                        "unknown field '{other}' (expected: {}format, compression, archive, notify, params.<name>)",
                        if dataset.is_none() { "dataset, " } else { "" }
                    ),
                ))
            }
        }
        seen.push(name);
    }
    match dataset {
        Some(dataset) => request.dataset = dataset.to_owned(),
        None if !seen.iter().any(|name| name == "dataset") => {
            return Err(ApiError::invalid("dataset", "'dataset' is required"))
        }
        None => {}
    }
    Ok((request, params))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(form: &str) -> Result<(ExportRequest, Vec<(String, String)>), ApiError> {
        export_request_from_form(form.as_bytes(), None)
    }

    #[test]
    fn a_form_makes_the_request_its_json_would_with_its_parameters_as_text() {
        let form = "dataset=things&params.ids=1,2,3&params.flag=true&params.ids=4\
                    &params.empty=&format=json&compression=&notify=a%40b.co,c%40d.co";
        let (request, params) = read(form).unwrap();
        let expected = ExportRequest {
            format: Format::Json,
            notify: vec!["a@b.co".into(), "c@d.co".into()],
            ..ExportRequest::new("things", Default::default())
        };
        assert_eq!(request, expected);
        let pairs: Vec<(&str, &str)> = params
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        // Every field as given; the submission takes an empty one as not given.
        assert_eq!(
            pairs,
            [
                ("ids", "1,2,3"),
                ("flag", "true"),
                ("ids", "4"),
                ("empty", "")
            ]
        );
    }

    #[test]
    fn a_form_is_refused_by_the_field_at_fault() {
        for (form, field) in [
            ("params.ids=1", "dataset"),
            ("dataset=things&dataset=other", "dataset"),
            ("dataset=things&format=xml", "format"),
            ("dataset=things&format=csv&format=json", "format"),
            ("dataset=things&colour=red", "colour"),
        ] {
            let e = read(form).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{form}: {e}");
        }
        // The path names the dataset: the form may not.
        let (request, _) = export_request_from_form(b"params.ids=1", Some("things")).unwrap();
        assert_eq!(request.dataset, "things");
        let e = export_request_from_form(b"dataset=other", Some("things")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("dataset"));
    }
}
