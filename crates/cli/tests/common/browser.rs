//! The harness for the real-browser tests of `--ui`: a headless Chromium (Debian's `chromium`
//! package) driven by the `headless_chrome` crate over the Chrome DevTools Protocol, with one
//! tab a test navigates, evaluates JavaScript in and takes a screenshot of.
//!
//! What it does not do: it does not download or install a browser (the crate's `fetch` feature
//! is off; see [`chromium`]; the skip / require policy is the caller's), it does not sandbox
//! Chromium (tests often run as root in containers), and it never panics: every failure is an
//! `Err(String)` naming what failed, and every step gives up after [`TIMEOUT`]. The crate makes
//! Chromium's profile in a temporary folder and kills the browser and removes it on drop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::protocol::cdp::Runtime;
use headless_chrome::{LaunchOptions, Tab};
use serde_json::Value;

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

/// A headless Chromium and one tab in it. Drop closes the browser.
pub struct Browser {
    tab: Arc<Tab>,
    // Dropped after the tab: that ends the Chromium process and removes its profile.
    _chrome: headless_chrome::Browser,
}

impl Browser {
    /// Starts Chromium headless with a fresh profile and opens a tab, within [`TIMEOUT`].
    pub fn launch(chromium: &Path) -> Result<Browser, String> {
        let options = LaunchOptions::default_builder()
            .path(Some(chromium.to_path_buf()))
            .sandbox(false)
            .window_size(Some((1280, 900)))
            // A test may watch the page for a while between calls; the connection stays open.
            .idle_browser_timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| format!("chromium's launch options: {e}"))?;
        let chrome = headless_chrome::Browser::new(options)
            .map_err(|e| format!("could not start {}: {e}", chromium.display()))?;
        let tab = chrome
            .new_tab()
            .map_err(|e| format!("could not open a tab in chromium: {e}"))?;
        tab.set_default_timeout(TIMEOUT);
        Ok(Browser {
            tab,
            _chrome: chrome,
        })
    }

    /// Navigates to `url` and waits until it has loaded.
    pub fn goto(&mut self, url: &str) -> Result<(), String> {
        self.tab
            .navigate_to(url)
            .and_then(|tab| tab.wait_until_navigated())
            .map(|_| ())
            .map_err(|e| format!("navigating to {url} failed: {e}"))
    }

    /// The JSON value of a JavaScript expression (promises are awaited; `undefined` is `Null`);
    /// an expression that throws is an `Err` with the exception's description.
    pub fn eval(&mut self, expression: &str) -> Result<Value, String> {
        // `Tab::evaluate` returns objects by reference and drops the exception: call the
        // method itself, by value.
        let evaluated = self
            .tab
            .call_method(Runtime::Evaluate {
                expression: expression.to_string(),
                return_by_value: Some(true),
                generate_preview: None,
                silent: Some(false),
                await_promise: Some(true),
                include_command_line_api: None,
                user_gesture: None,
                object_group: None,
                context_id: None,
                throw_on_side_effect: None,
                timeout: None,
                disable_breaks: None,
                repl_mode: None,
                allow_unsafe_eval_blocked_by_csp: None,
                unique_context_id: None,
                serialization_options: None,
            })
            .map_err(|e| format!("evaluating `{expression}` failed: {e}"))?;
        if let Some(details) = evaluated.exception_details {
            let message = details
                .exception
                .and_then(|e| e.description)
                .unwrap_or(details.text);
            return Err(format!("evaluating `{expression}` threw: {message}"));
        }
        Ok(evaluated.result.value.unwrap_or(Value::Null))
    }

    /// Saves a PNG of the viewport to `path`, creating its parent folders.
    pub fn screenshot(&mut self, path: &Path) -> Result<(), String> {
        let png = self
            .tab
            .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
            .map_err(|e| format!("taking a screenshot failed: {e}"))?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("could not create {}: {e}", parent.display()))?;
        }
        std::fs::write(path, png).map_err(|e| format!("could not write {}: {e}", path.display()))
    }
}
