//! `status`: API Gateway → a job's latest state, its history, a fresh download link, the
//! caller's jobs and the catalogue; lookups (`/lookups/{dataset}`, `/customer/{ids}`). Also
//! the original sample's `GET /product`.

use export_aws::lambda::{self, Error};
use export_aws::{functions, Clients, Env};
use export_core::http::{lookup_router, status_router, with_json_fallbacks};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_logging();
    let clients = Clients::from_environment().await?;
    let mut env = Env::from_process();
    let queries = functions::status(&mut env, &clients);
    let lookups = functions::lookups(&mut env, &clients, queries.access.clone());
    let role_owner = functions::role_owner(&mut env);
    env.finish()?;
    let routes = status_router(queries).merge(lookup_router(lookups));
    lambda::serve_http(with_json_fallbacks(routes), role_owner).await
}
