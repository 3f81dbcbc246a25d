//! A real browser for the console's tests: Debian's headless Chromium driven over WebDriver
//! by its ChromeDriver, both installed on first use (as moto and newman are). Every wait has a
//! deadline and fails with what the page showed last.

use crate::common::eventually;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// WebDriver's key for an element reference in JSON.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Installs `chromium` and `chromium-driver` from Debian's packages unless both are there.
fn install_chromium() {
    static INSTALLING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let apt = |args: &[&str]| {
        let mut command = if root {
            Command::new("apt-get")
        } else {
            // -n: fail at once rather than wait for a password no one will type.
            let mut sudo = Command::new("sudo");
            sudo.args(["-n", "apt-get"]);
            sudo
        };
        command
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    let packages = [
        "install",
        "-y",
        "--no-install-recommends",
        "chromium",
        "chromium-driver",
    ];
    if !apt(&packages) {
        // A fresh machine's package lists may be missing or stale.
        assert!(apt(&["update"]), "apt-get update failed");
        assert!(
            apt(&packages),
            "apt-get install chromium chromium-driver failed"
        );
    }
}

/// ChromeDriver on a port of its own choosing (`--port=0`: it binds a free one and says
/// which), once it says it is ready, so no other process can take the port in between.
async fn start_driver(http: &reqwest::Client) -> (Child, String) {
    let mut command = Command::new(CHROMEDRIVER);
    command
        .arg("--port=0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // Its own process group, so that Chromium goes with it however the test ends.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut driver = command.spawn().expect("chromedriver starts");
    // "ChromeDriver was started successfully on port N.", read on a thread of its own so the
    // wait for it has a deadline.
    let stdout = driver.stdout.take().expect("chromedriver's stdout");
    let (said, told) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(port) = line
                .split("on port ")
                .nth(1)
                .and_then(|rest| rest.trim_end_matches('.').parse::<u16>().ok())
                .filter(|_| line.contains("started successfully"))
            {
                let _ = said.send(port);
            }
        }
    });
    let port = told
        .recv_timeout(Duration::from_secs(20))
        .expect("chromedriver says which port it bound within 20 s");
    let base = format!("http://127.0.0.1:{port}");
    eventually("chromedriver ready", Duration::from_secs(20), || {
        let status = http.get(format!("{base}/status")).send();
        async move {
            let status: Value = status
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            if status["value"]["ready"] == true {
                Ok(())
            } else {
                Err(status.to_string())
            }
        }
    })
    .await;
    (driver, base)
}

pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    session: String,
    base: String,
    pub downloads: tempfile::TempDir,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A headless Chromium with a window of 1280×1000 and downloads going to [`Self::downloads`].
    pub async fn start() -> Browser {
        tokio::task::spawn_blocking(install_chromium).await.unwrap();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let (driver, base) = start_driver(&http).await;
        let mut browser = Browser {
            driver,
            http,
            session: String::new(),
            base,
            downloads: tempfile::tempdir().unwrap(),
            _profile: tempfile::tempdir().unwrap(),
        };
        let downloads = browser.downloads.path().to_string_lossy().into_owned();
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        // Nothing but the console: this machine's network is closed.
                        "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", "--no-first-run", "--disable-quic",
                        "--window-size=1280,1000",
                        format!("--user-data-dir={}", browser._profile.path().display()),
                    ],
                    "prefs": {
                        "download.default_directory": downloads,
                        "download.prompt_for_download": false,
                    },
                },
            }},
        });
        let created = browser
            .command(reqwest::Method::POST, "/session", capabilities)
            .await;
        browser.session = created["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        // Headless Chromium saves downloads only where it is told to.
        browser
            .session_command(
                reqwest::Method::POST,
                "/goog/cdp/execute",
                json!({
                    "cmd": "Browser.setDownloadBehavior",
                    "params": { "behavior": "allow", "downloadPath": downloads },
                }),
            )
            .await;
        browser
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if method != reqwest::Method::GET && method != reqwest::Method::DELETE {
            request = request.json(&body);
        }
        let response = request
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"));
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        assert!(status.is_success(), "WebDriver {path}: {status} {answer}");
        answer["value"].clone()
    }

    async fn session_command(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        self.command(method, &format!("/session/{}{path}", self.session), body)
            .await
    }

    pub async fn goto(&self, url: &str) {
        self.session_command(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    /// Runs `script` in the page (a function body; `arguments` are `args`) and returns its value.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.session_command(
            reqwest::Method::POST,
            "/execute/sync",
            json!({ "script": script, "args": args }),
        )
        .await
    }

    /// Waits until `script` returns something JavaScript calls true (not null, false, 0 or
    /// "") and returns it.
    pub async fn wait_for(&self, what: &str, deadline: Duration, script: &str) -> Value {
        eventually(what, deadline, || async {
            let value = self.eval(script, json!([])).await;
            match &value {
                Value::Null | Value::Bool(false) => Err(self.page_text().await),
                Value::String(s) if s.is_empty() => Err(self.page_text().await),
                Value::Number(n) if n.as_f64() == Some(0.0) => Err(self.page_text().await),
                _ => Ok(value),
            }
        })
        .await
    }

    /// The text of the page's main region: what a failed wait reports.
    pub async fn page_text(&self) -> String {
        let text = self
            .eval(
                "const m = document.querySelector('main'); return location.hash + ' | ' + (m ? m.innerText : document.body.innerText);",
                json!([]),
            )
            .await;
        text.as_str()
            .unwrap_or_default()
            .chars()
            .take(2000)
            .collect()
    }

    /// The element `css` selects, once it is on the page (within 20 s).
    async fn element(&self, css: &str) -> String {
        let found = eventually(
            &format!("an element {css}"),
            Duration::from_secs(20),
            || async {
                let response = self
                    .http
                    .post(format!("{}/session/{}/element", self.base, self.session))
                    .json(&json!({ "using": "css selector", "value": css }))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let answer: Value = response.json().await.map_err(|e| e.to_string())?;
                match answer["value"][ELEMENT].as_str() {
                    Some(id) => Ok(id.to_owned()),
                    None => Err(self.page_text().await),
                }
            },
        )
        .await;
        found
    }

    /// A real click: the browser scrolls to the element and clicks its centre.
    pub async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.session_command(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            json!({}),
        )
        .await;
    }

    /// Clears the field and types `text` into it, key by key.
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.session_command(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            json!({}),
        )
        .await;
        self.session_command(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    /// Chooses `value` in the select `css`, as picking it from the list does.
    pub async fn choose(&self, css: &str, value: &str) {
        let option = format!("{css} option[value=\"{value}\"]");
        self.click(css).await;
        self.click(&option).await;
        let chosen = self
            .eval(
                "return document.querySelector(arguments[0]).value;",
                json!([css]),
            )
            .await;
        assert_eq!(chosen, value, "choosing {value} in {css}");
    }

    pub async fn screenshot(&self, path: &Path) {
        use base64::Engine;
        let png = self
            .session_command(reqwest::Method::GET, "/screenshot", json!({}))
            .await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    /// The one file downloaded so far, once it is complete (within 30 s).
    pub async fn downloaded(&self) -> PathBuf {
        let dir = self.downloads.path().to_owned();
        eventually("a finished download", Duration::from_secs(30), || async {
            let files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .collect();
            match files.as_slice() {
                [file] if !file.to_string_lossy().ends_with(".crdownload") => Ok(file.clone()),
                _ => Err(files),
            }
        })
        .await
    }

    pub async fn close(mut self) {
        let session = std::mem::take(&mut self.session);
        self.command(
            reqwest::Method::DELETE,
            &format!("/session/{session}"),
            json!({}),
        )
        .await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: ChromeDriver and the Chromium it started.
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
