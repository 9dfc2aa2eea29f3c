//! A real browser for the console's tests: Debian's `chromium`, headless, driven through
//! `chromedriver` (WebDriver) with fantoccini. Without chromedriver a test says why and skips,
//! except under `CI=true`, where it fails (`.ci/run` installs both packages).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

use super::engines::on_ci;

/// Longest a page condition is waited for.
pub const PAGE_WAIT: Duration = Duration::from_secs(15);

/// A headless Chromium session. Dropping it kills chromedriver's whole process group, the
/// browser included (a failed test leaves nothing running).
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's process group; no memory is touched.
        unsafe { libc::kill(-(self.driver.id() as i32), libc::SIGKILL) };
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// A new browser session, or `None` (after saying why) when chromedriver is missing
    /// outside CI.
    pub async fn start(test: &str) -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let spawned = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let driver = match spawned {
            Ok(driver) => driver,
            Err(error) if on_ci() => panic!(
                "{test}: CI=true and no chromedriver ({error}); .ci/run installs Debian's \
                 chromium and chromium-driver"
            ),
            Err(error) => {
                eprintln!(
                    "skipping {test}: no chromedriver ({error}); install Debian's chromium and \
                     chromium-driver to run it"
                );
                return None;
            }
        };
        let mut browser_driver = DriverGuard(Some(driver));
        tokio::task::spawn_blocking(move || wait_until_ready(port))
            .await
            .unwrap();
        let capabilities = serde_json::json!({
            "goog:chromeOptions": {
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--window-size=1280,900"]
            }
        });
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities.as_object().unwrap().clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a chromium session (is chromium installed?)");
        Some(Self {
            client,
            driver: browser_driver.0.take().unwrap(),
        })
    }

    /// The text of the element with `id` (waiting for it to exist).
    pub async fn text(&self, id: &str) -> String {
        let element = self
            .client
            .wait()
            .at_most(PAGE_WAIT)
            .for_element(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("no #{id}: {e}"));
        element.text().await.unwrap()
    }

    /// Waits until the text of `#id` satisfies `wanted`; the text then.
    pub async fn until_text(&self, id: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            let text = self.text(id).await;
            if wanted(&text) {
                return text;
            }
            assert!(Instant::now() < deadline, "#{id} stayed {text:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Types `text` into the input `#id` (cleared first).
    pub async fn fill(&self, id: &str, text: &str) {
        let input = self.client.find(Locator::Id(id)).await.unwrap();
        input.clear().await.unwrap();
        input.send_keys(text).await.unwrap();
    }

    /// Clicks `#id`.
    pub async fn click(&self, id: &str) {
        self.client
            .wait()
            .at_most(PAGE_WAIT)
            .for_element(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("no #{id}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("cannot click #{id}: {e}"));
    }

    /// Whether `#id` is shown (not `hidden`).
    pub async fn shown(&self, id: &str) -> bool {
        let element = self.client.find(Locator::Id(id)).await.unwrap();
        element.is_displayed().await.unwrap()
    }
}

/// Kills chromedriver's group if the session never starts.
struct DriverGuard(Option<Child>);

impl Drop for DriverGuard {
    fn drop(&mut self) {
        if let Some(mut driver) = self.0.take() {
            // SAFETY: as in `Browser::drop`.
            unsafe { libc::kill(-(driver.id() as i32), libc::SIGKILL) };
            let _ = driver.wait();
        }
    }
}

/// Waits until chromedriver answers `ready` on `port` (it keeps the socket open: read with a
/// timeout, and stop at the answer).
fn wait_until_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut connection) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = write!(
                connection,
                "GET /status HTTP/1.1\r\nHost: localhost\r\n\r\n"
            );
            connection
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let (mut buffer, mut answer) = ([0u8; 4096], Vec::new());
            while let Ok(n @ 1..) = connection.read(&mut buffer) {
                answer.extend_from_slice(&buffer[..n]);
                if String::from_utf8_lossy(&answer).contains("\"ready\":true") {
                    return;
                }
            }
        }
        assert!(Instant::now() < deadline, "chromedriver never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
}
