//! A real browser for the page tests: Debian's `chromium` driven by `chromedriver`
//! over WebDriver (plain HTTP and JSON, spoken here with reqwest).
//!
//! chromedriver runs in its own process group, so that dropping the [`Browser`] (also
//! during a panic) ends it and every chromium process it started. Chromium is told to
//! stay on this machine: no background networking, no component updates, and a host
//! resolver that resolves nothing but loopback.

use crate::wait::{free_port, scaled, try_eventually};
use serde_json::{Value, json};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where Debian installs the browser and its driver.
pub const CHROMIUM: &str = "chromium";
/// The driver's executable name.
pub const CHROMEDRIVER: &str = "chromedriver";

/// Whether both are installed; otherwise skips (or fails under
/// [`crate::require::REQUIRE_ENV`]) with the reason.
pub fn available() -> bool {
    crate::require::tool(CHROMIUM, "drive a real browser (Debian package chromium)")
        && crate::require::tool(
            CHROMEDRIVER,
            "drive chromium over WebDriver (Debian package chromium-driver)",
        )
}

/// A chromedriver with one headless chromium session.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
}

fn chromium_path() -> PathBuf {
    crate::require::find_tool(CHROMIUM).unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

impl Browser {
    /// Starts chromedriver and a headless chromium of `width` x `height` CSS pixels.
    pub async fn start(width: u32, height: u32) -> Result<Browser, String> {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("probemesh-chromedriver-{port}.log"));
        let driver = Command::new(
            crate::require::find_tool(CHROMEDRIVER).ok_or("chromedriver is not installed")?,
        )
        .arg(format!("--port={port}"))
        .arg(format!("--log-path={}", log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start chromedriver: {e}"))?;
        let profile = tempfile::Builder::new()
            .prefix("probemesh-chromium-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let mut b = Browser {
            driver,
            http: reqwest::Client::new(),
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            _profile: profile,
        };
        let status_url = format!("{}/status", b.base);
        let http = b.http.clone();
        try_eventually(
            "chromedriver to answer /status",
            Duration::from_secs(20),
            Duration::from_millis(50),
            || {
                let (http, url) = (http.clone(), status_url.clone());
                async move {
                    let v: Value = http
                        .get(&url)
                        .send()
                        .await
                        .map_err(|e| e.to_string())?
                        .json()
                        .await
                        .map_err(|e| e.to_string())?;
                    if v["value"]["ready"] == true {
                        Ok(())
                    } else {
                        Err(v.to_string())
                    }
                }
            },
        )
        .await?;
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium_path().to_string_lossy(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", b._profile.path().display()),
                    "--no-first-run", "--no-default-browser-check",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-default-apps", "--disable-sync", "--disable-extensions",
                    "--disable-domain-reliability", "--metrics-recording-only",
                    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
                    "--hide-scrollbars", "--force-device-scale-factor=1",
                ]
            }
        }}});
        let v = b
            .call(reqwest::Method::POST, "/session", Some(caps))
            .await?;
        b.session = v["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no session id in {v}"))?
            .to_string();
        b.set_size(width, height).await?;
        Ok(b)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(scaled(Duration::from_secs(60)));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.map_err(|e| format!("{path}: {e}"))?;
        let status = r.status();
        let v: Value = r.json().await.map_err(|e| format!("{path}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{path}: HTTP {status}: {v}"));
        }
        Ok(v["value"].clone())
    }

    fn at(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Sets the viewport to `width` x `height` CSS pixels (the window is sized so that
    /// the page's own `innerWidth` is `width`).
    pub async fn set_size(&self, width: u32, height: u32) -> Result<(), String> {
        self.call(
            reqwest::Method::POST,
            &self.at("/window/rect"),
            Some(json!({"width": width, "height": height})),
        )
        .await?;
        let inner = self
            .eval("return [window.innerWidth, window.innerHeight]")
            .await?;
        let (iw, ih) = (
            inner[0].as_u64().unwrap_or(0),
            inner[1].as_u64().unwrap_or(0),
        );
        // A window may count a frame around the viewport: grow by the difference once.
        let (w, h) = (u64::from(width), u64::from(height));
        if (iw, ih) != (w, h) && iw > 0 && ih > 0 {
            let w = (2 * w).saturating_sub(iw);
            let h = (2 * h).saturating_sub(ih);
            self.call(
                reqwest::Method::POST,
                &self.at("/window/rect"),
                Some(json!({"width": w, "height": h})),
            )
            .await?;
        }
        Ok(())
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) -> Result<(), String> {
        self.call(
            reqwest::Method::POST,
            &self.at("/url"),
            Some(json!({"url": url})),
        )
        .await
        .map(|_| ())
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    pub async fn eval(&self, script: &str) -> Result<Value, String> {
        self.call(
            reqwest::Method::POST,
            &self.at("/execute/sync"),
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// A PNG screenshot of the viewport, written to `path`.
    pub async fn screenshot(&self, path: &Path) -> Result<(), String> {
        use base64::Engine;
        let v = self
            .call(reqwest::Method::GET, &self.at("/screenshot"), None)
            .await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().ok_or("screenshot is not a string")?)
            .map_err(|e| e.to_string())?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        std::fs::write(path, png).map_err(|e| format!("{}: {e}", path.display()))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the whole group takes chromium down with its driver.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
