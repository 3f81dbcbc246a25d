//! moto's server (`moto[server]` from PyPI) as a child process on a free loopback port.

use anyhow::{bail, Context};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The moto release the suite runs against. Pinned: moto 5.2.0 to 5.2.5 answer
/// `CompleteMultipartUpload` with a `CompleteMultipartUploadResponse` root element, which the
/// Rust SDK rightly refuses (S3 sends `CompleteMultipartUploadResult`).
pub const MOTO_VERSION: &str = "5.1.22";

/// What moto does differently from AWS's documentation, put right before its server starts.
const FIDELITY: &str = include_str!("moto_fidelity.py");

/// Where moto is installed: a virtual environment of its own, so the pin never changes the
/// machine's Python packages. `MOTO_VENV` overrides it.
fn venv() -> PathBuf {
    std::env::var_os("MOTO_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.moto-venv"))
}

fn python() -> PathBuf {
    venv().join("bin").join("python")
}

/// Creates the virtual environment and installs moto's server into it, unless it is there.
pub fn ensure_installed() -> anyhow::Result<()> {
    let check = format!(
        "import moto, moto.server, flask_cors; assert moto.__version__ == '{MOTO_VERSION}'"
    );
    let ready = || {
        Command::new(python())
            .args(["-c", &check])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if ready() {
        return Ok(());
    }
    let dir = venv();
    let system_python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    eprintln!(
        "installing moto[server]=={MOTO_VERSION} into {}…",
        dir.display()
    );
    // What the installers print goes to standard error: standard output is the emulator's
    // `export NAME=…` lines, which a shell may be reading.
    let created = Command::new(&system_python)
        .args(["-m", "venv"])
        .arg(&dir)
        .stdout(std::io::stderr())
        .status()
        .with_context(|| format!("running {system_python} -m venv"))?;
    if !created.success() {
        bail!(
            "could not create a virtual environment at {} ({created})",
            dir.display()
        );
    }
    let installed = Command::new(python())
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .arg(format!("moto[server]=={MOTO_VERSION}"))
        .stdout(std::io::stderr())
        .status()
        .context("running pip")?;
    if !installed.success() || !ready() {
        bail!(
            "could not install moto[server]=={MOTO_VERSION} into {}",
            dir.display()
        );
    }
    Ok(())
}

/// A running moto server; stopped when dropped, or when this process exits (the server's
/// shell watches its stdin, which closes with us).
pub struct Moto {
    pub endpoint: String,
    child: Child,
}

impl Moto {
    /// Starts moto's server on a free 127.0.0.1 port and waits until it answers.
    pub fn start() -> anyhow::Result<Moto> {
        ensure_installed()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        // moto's server with the fixes that make it answer as AWS documents.
        let fidelity = venv().join("moto_fidelity.py");
        std::fs::write(&fidelity, FIDELITY)
            .with_context(|| format!("writing {}", fidelity.display()))?;
        // moto's request log and tracebacks go nowhere unless MOTO_LOG names a file for them.
        let log = std::env::var("MOTO_LOG").unwrap_or_else(|_| "/dev/null".into());
        let script = format!(
            "'{}' '{}' -H 127.0.0.1 -p {port} >>'{log}' 2>&1 & pid=$!; read _; kill $pid",
            python().display(),
            fidelity.display()
        );
        let child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .spawn()
            .context("starting moto's server")?;
        let moto = Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let probe = format!("{}/moto-api/", moto.endpoint);
        loop {
            if probe::answers_ok(&probe) {
                return Ok(moto);
            }
            if Instant::now() > deadline {
                bail!(
                    "moto's server did not answer on {} within 60 s",
                    moto.endpoint
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every email moto's SES has accepted: `(destinations, subject, body)` as it recorded them
    /// (the HTML body when there is one).
    pub async fn sent_emails(&self) -> anyhow::Result<Vec<SentEmail>> {
        // SES's models only (`moto_fidelity.py` narrows the dump): the whole dump walks every
        // model moto holds, and can trip over one that changes under it (other tests keep
        // working); a second look succeeds.
        let url = format!("{}/moto-api/data.json?service=ses", self.endpoint);
        let mut attempt = 0;
        let data: serde_json::Value = loop {
            attempt += 1;
            match reqwest::get(&url).await?.error_for_status() {
                Ok(response) => break response.json().await?,
                Err(e) if attempt >= 10 => return Err(e.into()),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
            }
        };
        let messages = data["ses"]["Message"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(messages
            .iter()
            .map(|m| SentEmail {
                to: m["destinations"]["ToAddresses"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
                subject: m["subject"].as_str().unwrap_or("").to_owned(),
                body: m["body"].as_str().unwrap_or("").to_owned(),
            })
            .collect())
    }
}

#[derive(Clone, Debug)]
pub struct SentEmail {
    pub to: Vec<String>,
    pub subject: String,
    pub body: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(stdin) = self.child.stdin.as_mut() {
            let _ = stdin.write_all(b"\n");
        }
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET over a std socket: the probe may run outside any async runtime.
mod probe {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    pub fn answers_ok(url: &str) -> bool {
        let Some(rest) = url.strip_prefix("http://") else {
            return false;
        };
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let Ok(mut stream) = TcpStream::connect(host) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).is_ok()
            && head.starts_with(b"HTTP/1.")
            && &head[9..12] == b"200"
    }
}
