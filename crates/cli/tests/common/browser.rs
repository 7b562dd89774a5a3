//! The harness for the real-browser tests of `--ui`: starts a headless Chromium (Debian's
//! `chromium` package), attaches to its one page over the Chrome DevTools Protocol (a
//! synchronous WebSocket), and lets a test navigate, evaluate JavaScript and take a screenshot.
//!
//! What it does not do: it does not download or install a browser (see [`chromium`]; the skip /
//! require policy is the caller's), it does not sandbox Chromium (`--no-sandbox`, as tests often
//! run as root in containers), it drives a single page and no other targets, it speaks only the
//! few CDP methods below, and it never panics: every failure is an `Err(String)` naming what
//! failed, and every call gives up after [`TIMEOUT`].

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use tungstenite::handshake::HandshakeError;
use tungstenite::{Message, WebSocket};

/// The longest any one step (launch, navigation, evaluation, screenshot) may take.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Where Chromium is, or `None`. An explicit `$CHROMIUM` wins (and is `None` if it names no
/// file, so a typo is not silently replaced by another browser); then `/usr/bin/chromium`,
/// `/usr/bin/chromium-browser`, then `chromium` / `chromium-browser` on `$PATH`.
pub fn chromium() -> Option<PathBuf> {
    if let Some(explicit) = std::env::var_os("CHROMIUM").filter(|v| !v.is_empty()) {
        let path = PathBuf::from(explicit);
        return path.is_file().then_some(path);
    }
    for fixed in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(fixed).is_file() {
            return Some(PathBuf::from(fixed));
        }
    }
    // What `which` would do, without depending on the `which` program being installed.
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// The Chromium process and its scratch folder; dropping it kills the one and removes the
/// other, so a failed `launch` cleans up as well as a finished test.
struct Process {
    child: Child,
    /// Holds `profile/` (the fresh `--user-data-dir`) and `stderr.log`.
    root: PathBuf,
    /// Chromium was asked to quit, so it is worth waiting a moment for it to do so.
    closing: bool,
}

impl Process {
    fn profile(&self) -> PathBuf {
        self.root.join("profile")
    }

    /// The last lines of Chromium's stderr, for error messages.
    fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(self.root.join("stderr.log")).unwrap_or_default();
        // Without a D-Bus (containers, CI) Chromium logs dozens of harmless dbus errors that
        // would bury the line that matters.
        let lines: Vec<&str> = text
            .lines()
            .filter(|line| !line.contains("ERROR:dbus/") && !line.trim().is_empty())
            .collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        if tail.is_empty() {
            "(empty)".to_string()
        } else {
            tail
        }
    }

    /// `Err` with the exit status if Chromium has already exited.
    fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "chromium exited early ({status}); its stderr:\n{}",
                self.stderr_tail()
            )),
            Err(e) => Err(format!("could not check on chromium: {e}")),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // A SIGKILLed browser leaves its helper processes to exit on their own, orphaned; after
        // `Browser.close` (sent by `Browser`'s Drop) it reaps them itself, so wait a moment first.
        let patience = Instant::now() + Duration::from_secs(if self.closing { 3 } else { 0 });
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < patience {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Chromium's helper processes may still be closing files in the profile for a moment
        // after the browser process is gone, so a first removal can fail on a non-empty folder.
        for _ in 0..20 {
            if std::fs::remove_dir_all(&self.root).is_ok() || !self.root.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A headless Chromium process plus one CDP session on its page. Drop asks Chromium to close
/// (killing it if it has not exited within 3 s) and removes its fresh `--user-data-dir`.
pub struct Browser {
    // Declared before `process` so the socket closes before the process is killed.
    socket: WebSocket<TcpStream>,
    process: Process,
    next_id: u64,
    /// Set when a `Page.loadEventFired` event passes by, whichever call happened to read it.
    loaded: bool,
}

impl Browser {
    /// Starts Chromium headless on `about:blank` with a fresh profile, waits for its DevTools
    /// port, and attaches to its page, all within [`TIMEOUT`].
    pub fn launch(chromium: &Path) -> Result<Browser, String> {
        static LAUNCHES: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "plumbline-chromium-{}-{}",
            std::process::id(),
            LAUNCHES.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("profile"))
            .map_err(|e| format!("could not create {}: {e}", root.display()))?;
        let stderr = File::create(root.join("stderr.log"))
            .map_err(|e| format!("could not create {}/stderr.log: {e}", root.display()))?;
        let child = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                // Port 0: Chromium picks a free port and writes it to DevToolsActivePort, so
                // parallel tests never collide.
                "--remote-debugging-port=0",
            ])
            .arg(format!(
                "--user-data-dir={}",
                root.join("profile").display()
            ))
            .args(["--window-size=1280,900", "about:blank"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&root);
                return Err(format!("could not start {}: {e}", chromium.display()));
            }
        };
        let mut process = Process {
            child,
            root,
            closing: false,
        };
        let deadline = Instant::now() + TIMEOUT;

        let port = wait_for_port(&mut process, deadline)?;
        let ws_url = wait_for_page(&mut process, port, deadline)?;
        let socket = connect(&ws_url, deadline)
            .map_err(|e| format!("{e}; chromium's stderr:\n{}", process.stderr_tail()))?;
        let mut browser = Browser {
            socket,
            process,
            next_id: 0,
            loaded: false,
        };
        // Without Page.enable no Page.loadEventFired events are sent, and `goto` waits for one.
        browser.call_until("Page.enable", json!({}), deadline)?;
        // Headless Chromium's --window-size includes room for the (invisible) browser UI, which
        // leaves a 1280x757 viewport; pin the viewport so screenshots are the full 1280x900.
        browser.call_until(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false }),
            deadline,
        )?;
        Ok(browser)
    }

    /// Navigates to `url` and waits for its load event. After a timeout the page may still be
    /// busy navigating and not answer later calls either; give up on the `Browser` then.
    pub fn goto(&mut self, url: &str) -> Result<(), String> {
        let deadline = Instant::now() + TIMEOUT;
        self.loaded = false;
        let result = self.call_until("Page.navigate", json!({ "url": url }), deadline)?;
        // A network failure (e.g. connection refused) is not a CDP error but an errorText.
        if let Some(error) = result.get("errorText").and_then(Value::as_str) {
            return Err(format!("navigating to {url} failed: {error}"));
        }
        while !self.loaded {
            self.read_message(deadline)
                .map_err(|e| format!("waiting for {url} to load: {e}"))?;
        }
        Ok(())
    }

    /// The JSON value of a JavaScript expression (promises are awaited; `undefined` is `Null`).
    pub fn eval(&mut self, expression: &str) -> Result<Value, String> {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        )?;
        if let Some(details) = result.get("exceptionDetails") {
            let message = details
                .pointer("/exception/description")
                .or_else(|| details.get("text"))
                .and_then(Value::as_str)
                .unwrap_or("(no description)");
            return Err(format!("evaluating `{expression}` threw: {message}"));
        }
        Ok(result
            .pointer("/result/value")
            .cloned()
            .unwrap_or(Value::Null))
    }

    /// Saves a PNG of the viewport to `path`, creating its parent folders.
    pub fn screenshot(&mut self, path: &Path) -> Result<(), String> {
        let result = self.call("Page.captureScreenshot", json!({ "format": "png" }))?;
        let data = result
            .get("data")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("Page.captureScreenshot returned no data: {result}"))?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| format!("Page.captureScreenshot returned bad base64: {e}"))?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("could not create {}: {e}", parent.display()))?;
        }
        std::fs::write(path, png).map_err(|e| format!("could not write {}: {e}", path.display()))
    }

    fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.call_until(method, params, Instant::now() + TIMEOUT)
    }

    /// Sends one command and reads until its response, remembering events on the way.
    fn call_until(
        &mut self,
        method: &str,
        params: Value,
        deadline: Instant,
    ) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({ "id": id, "method": method, "params": params }).to_string();
        self.socket
            .send(Message::text(request))
            .map_err(|e| format!("{method}: could not send to chromium: {e}"))?;
        loop {
            let message = self
                .read_message(deadline)
                .map_err(|e| format!("{method}: {e}"))?;
            if message.get("id").and_then(Value::as_u64) != Some(id) {
                continue;
            }
            if let Some(error) = message.get("error") {
                return Err(format!("{method} failed: {error}"));
            }
            return Ok(message.get("result").cloned().unwrap_or(Value::Null));
        }
    }

    /// Reads one CDP message (a response or an event) before `deadline`.
    fn read_message(&mut self, deadline: Instant) -> Result<Value, String> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "no answer from chromium within {}s",
                    TIMEOUT.as_secs()
                ));
            }
            // A zero read timeout would mean "block forever", hence the floor.
            let _ = self
                .socket
                .get_ref()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))));
            match self.socket.read() {
                Ok(Message::Text(text)) => {
                    let value: Value = serde_json::from_str(text.as_str())
                        .map_err(|e| format!("chromium sent bad JSON ({e}): {}", text.as_str()))?;
                    if value.get("method").and_then(Value::as_str) == Some("Page.loadEventFired") {
                        self.loaded = true;
                    }
                    return Ok(value);
                }
                Ok(Message::Close(frame)) => {
                    return Err(format!(
                        "chromium closed the DevTools connection ({frame:?}); its stderr:\n{}",
                        self.process.stderr_tail()
                    ))
                }
                // Pings are answered by tungstenite itself; CDP sends nothing else of interest.
                Ok(_) => {}
                // The read timeout; tungstenite keeps any partial frame, so reading again is safe.
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => {
                    return Err(format!(
                        "reading from chromium failed: {e}; its stderr:\n{}",
                        self.process.stderr_tail()
                    ))
                }
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Best effort: no answer is awaited, `Process`'s Drop waits for the exit and kills.
        self.next_id += 1;
        let close = json!({ "id": self.next_id, "method": "Browser.close" }).to_string();
        self.process.closing = self.socket.send(Message::text(close)).is_ok();
    }
}

/// Polls `<profile>/DevToolsActivePort`, whose first line is the port Chromium listens on.
fn wait_for_port(process: &mut Process, deadline: Instant) -> Result<u16, String> {
    let file = process.profile().join("DevToolsActivePort");
    loop {
        // Only a complete first line counts: the file may be seen half-written.
        if let Ok(text) = std::fs::read_to_string(&file) {
            if let Some((first, _)) = text.split_once('\n') {
                if let Ok(port) = first.trim().parse::<u16>() {
                    return Ok(port);
                }
            }
        }
        process.check_alive()?;
        if Instant::now() >= deadline {
            return Err(format!(
                "chromium did not write DevToolsActivePort within {}s; its stderr:\n{}",
                TIMEOUT.as_secs(),
                process.stderr_tail()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `/json/list` for the page target's WebSocket URL. The list also holds targets of type
/// `browser_ui` (Chromium's own omnibox popups), which are not the page.
fn wait_for_page(process: &mut Process, port: u16, deadline: Instant) -> Result<String, String> {
    loop {
        let last = match http_get(port, "/json/list", deadline) {
            Ok(body) => match serde_json::from_str::<Value>(&body) {
                Ok(Value::Array(targets)) => {
                    let page = targets
                        .iter()
                        .find(|t| t.get("type").and_then(Value::as_str) == Some("page"));
                    if let Some(url) = page
                        .and_then(|t| t.get("webSocketDebuggerUrl"))
                        .and_then(Value::as_str)
                    {
                        return Ok(url.to_string());
                    }
                    format!("no page target in {body}")
                }
                _ => format!("not a JSON list: {body}"),
            },
            Err(e) => e,
        };
        process.check_alive()?;
        if Instant::now() >= deadline {
            return Err(format!(
                "no page target at http://127.0.0.1:{port}/json/list within {}s ({last}); \
                 chromium's stderr:\n{}",
                TIMEOUT.as_secs(),
                process.stderr_tail()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A TCP connection with read and write timeouts set, so no I/O on it can hang past `deadline`.
fn tcp(addr: &str, deadline: Instant) -> Result<TcpStream, String> {
    let socket_addr: SocketAddr = addr
        .to_socket_addrs()
        .map_err(|e| format!("bad address {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("bad address {addr}"))?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    let stream = TcpStream::connect_timeout(&socket_addr, left)
        .map_err(|e| format!("could not connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(left))
        .and_then(|()| stream.set_write_timeout(Some(left)))
        .and_then(|()| stream.set_nodelay(true))
        .map_err(|e| format!("could not configure the connection to {addr}: {e}"))?;
    Ok(stream)
}

/// A minimal HTTP/1.1 GET to Chromium's DevTools server (which sends `Content-Length`).
fn http_get(port: u16, path: &str, deadline: Instant) -> Result<String, String> {
    let addr = format!("127.0.0.1:{port}");
    let mut stream = tcp(&addr, deadline)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("GET {path}: could not send: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        // Stop at Content-Length rather than waiting for EOF, in case the server keeps the
        // connection open despite `Connection: close`.
        if let Some((head, body)) = split_response(&raw) {
            if let Some(length) = content_length(head) {
                if body.len() >= length {
                    break;
                }
            }
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("GET {path}: could not read: {e}")),
        }
    }
    let (head, body) = split_response(&raw).ok_or_else(|| {
        format!(
            "GET {path}: incomplete response: {}",
            String::from_utf8_lossy(&raw)
        )
    })?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("GET {path}: {status}"));
    }
    let body = match content_length(head) {
        Some(length) => &body[..length.min(body.len())],
        None => body,
    };
    Ok(String::from_utf8_lossy(body).into_owned())
}

fn split_response(raw: &[u8]) -> Option<(&str, &[u8])> {
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..at]).ok()?;
    Some((head, &raw[at + 4..]))
}

fn content_length(head: &str) -> Option<usize> {
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if name.trim().eq_ignore_ascii_case("content-length") {
            value.trim().parse().ok()
        } else {
            None
        }
    })
}

/// Opens the CDP WebSocket over our own `TcpStream`, so its timeouts apply to every read.
fn connect(ws_url: &str, deadline: Instant) -> Result<WebSocket<TcpStream>, String> {
    let addr = ws_url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .ok_or_else(|| format!("unexpected webSocketDebuggerUrl {ws_url}"))?;
    let stream = tcp(addr, deadline)?;
    let mut attempt = tungstenite::client(ws_url, stream);
    loop {
        match attempt {
            Ok((socket, _response)) => {
                // `tcp` sized the write timeout to what was left of the launch; reset it.
                socket
                    .get_ref()
                    .set_write_timeout(Some(TIMEOUT))
                    .map_err(|e| format!("could not configure the connection to {addr}: {e}"))?;
                return Ok(socket);
            }
            // The read timeout fired mid-handshake; carry on until the deadline.
            Err(HandshakeError::Interrupted(mid)) => {
                if Instant::now() >= deadline {
                    return Err(format!(
                        "WebSocket handshake with {ws_url} took over {}s",
                        TIMEOUT.as_secs()
                    ));
                }
                attempt = mid.handshake();
            }
            Err(HandshakeError::Failure(e)) => {
                return Err(format!("WebSocket handshake with {ws_url} failed: {e}"))
            }
        }
    }
}
