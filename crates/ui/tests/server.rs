//! The live page server over real sockets, with plain HTTP/1.1 requests written by hand.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../../measure/tests/exposition/mod.rs"]
mod exposition;
use exposition::parse_exposition;

use plumbline_measure::{Live, LiveSnapshot, Recorder, RunInfo};
use plumbline_ui::{serve, serve_metrics, UiError};

const TIMEOUT: Duration = Duration::from_secs(5);

struct Reply {
    status: u16,
    /// Lower-cased names.
    headers: HashMap<String, String>,
    body: String,
}

fn connect(addr: SocketAddr, path: &str) -> BufReader<TcpStream> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    BufReader::new(stream)
}

fn line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn head(r: &mut impl BufRead) -> (u16, HashMap<String, String>) {
    let status_line = line(r).expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut headers = HashMap::new();
    loop {
        let l = line(r).expect("header");
        if l.is_empty() {
            return (status, headers);
        }
        let (k, v) = l.split_once(':').expect("header colon");
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
    }
}

/// One chunk of a chunked body; `None` at the last chunk.
fn chunk(r: &mut impl BufRead) -> io::Result<Option<Vec<u8>>> {
    let size = line(r)?;
    let size = size.split(';').next().unwrap_or("").trim();
    if size.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    let size = usize::from_str_radix(size, 16).expect("chunk size");
    if size == 0 {
        return Ok(None);
    }
    let mut data = vec![0; size];
    r.read_exact(&mut data)?;
    line(r)?;
    Ok(Some(data))
}

fn get(addr: SocketAddr, path: &str) -> Reply {
    let mut r = connect(addr, path);
    let (status, headers) = head(&mut r);
    let mut body = Vec::new();
    if headers.get("transfer-encoding").map(String::as_str) == Some("chunked") {
        while let Some(data) = chunk(&mut r).expect("chunk") {
            body.extend(data);
        }
    } else {
        r.read_to_end(&mut body).expect("body");
    }
    Reply {
        status,
        headers,
        body: String::from_utf8(body).expect("utf-8 body"),
    }
}

/// Reads Server-Sent Events off a chunked response.
struct Events {
    r: BufReader<TcpStream>,
    buf: String,
}

impl Events {
    fn open(addr: SocketAddr) -> Self {
        let mut r = connect(addr, "/events");
        let (status, headers) = head(&mut r);
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "text/event-stream");
        Self {
            r,
            buf: String::new(),
        }
    }

    /// The next event as (event name, data); `None` when the stream ends.
    fn next(&mut self) -> io::Result<Option<(String, String)>> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let text: String = self.buf.drain(..end + 2).collect();
                let (mut name, mut data) = ("message".to_owned(), Vec::new());
                for l in text.lines() {
                    if let Some(v) = l.strip_prefix("event:") {
                        name = v.trim_start().to_owned();
                    } else if let Some(v) = l.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if data.is_empty() {
                    continue; // a comment or keep-alive
                }
                return Ok(Some((name, data.join("\n"))));
            }
            match chunk(&mut self.r)? {
                Some(data) => self
                    .buf
                    .push_str(std::str::from_utf8(&data).expect("utf-8")),
                None => return Ok(None),
            }
        }
    }

    fn snapshot(&mut self) -> LiveSnapshot {
        let (name, data) = self.next().expect("read").expect("an event");
        assert_eq!(name, "snapshot");
        serde_json::from_str(&data).expect("snapshot JSON")
    }
}

fn live() -> Arc<Live> {
    let live = Arc::new(Live::new());
    live.begin_run(RunInfo {
        label: "run 1/1: \"quoted\" \\ and\nnewline".into(),
        workers: 2,
        total: Some(1000),
        target_per_s: Some(250.0),
    });
    live
}

#[test]
fn the_page_has_every_element_the_contract_names_and_no_outside_url() {
    let server = serve("127.0.0.1:0", live()).expect("serve");
    let reply = get(server.addr(), "/");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["content-type"], "text/html; charset=utf-8");
    for id in [
        "label",
        "elapsed",
        "items-in",
        "items-out",
        "in-flight",
        "late",
        "rate-in",
        "rate-out",
        "target",
        "p50",
        "p99",
        "progress",
        "updates",
        "status",
        "workers",
        "partitions",
        "notes",
    ] {
        assert!(
            reply.body.contains(&format!("id=\"{id}\"")),
            "no #{id} on the page"
        );
    }
    assert!(reply.body.contains("new EventSource(\"/events\")"));
    assert_eq!(reply.body.matches("<canvas").count(), 2);
    assert!(!reply.body.contains("http://") && !reply.body.contains("https://"));
    assert!(reply.body.len() < 15_000, "{} bytes", reply.body.len());
}

#[test]
fn unknown_paths_are_404() {
    let server = serve("127.0.0.1:0", live()).expect("serve");
    assert_eq!(get(server.addr(), "/nope").status, 404);
    assert_eq!(get(server.addr(), "/events/x").status, 404);
}

#[test]
fn snapshot_json_is_the_live_snapshot() {
    let live = live();
    live.items_out.store(9, Ordering::Relaxed);
    live.tick();
    live.note("4 → 3 members (graceful)");
    let server = serve("127.0.0.1:0", live.clone()).expect("serve");
    let reply = get(server.addr(), "/snapshot.json");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["content-type"], "application/json");
    let s: LiveSnapshot = serde_json::from_str(&reply.body).expect("JSON");
    assert_eq!(s.items_out, 9);
    assert_eq!(s.run.workers, 2);
    assert_eq!(s.recent.len(), 1);
    assert_eq!(s.notes.len(), 1);
    assert_eq!(s.notes[0].text, "4 → 3 members (graceful)");
}

/// `GET /metrics`: a 200 of Prometheus text that the strict reader takes; its samples and text.
fn scrape(addr: SocketAddr) -> (std::collections::BTreeMap<String, f64>, String) {
    let reply = get(addr, "/metrics");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    (parse_exposition(&reply.body), reply.body)
}

#[test]
fn metrics_are_a_valid_exposition_of_what_live_holds() {
    let live = live();
    live.items_in.store(50, Ordering::Relaxed);
    live.items_out.store(42, Ordering::Relaxed);
    live.late.store(3, Ordering::Relaxed);
    live.set_per_worker(&[30, 12]);
    live.set_per_partition(vec![("p\"0\"\\\n".into(), 40), ("p1".into(), 2)]);
    let mut batch = Recorder::new();
    (1..=100).for_each(|ms| batch.record_ns(ms * 1_000_000));
    live.add_latencies(&mut batch);
    live.tick();
    let server = serve("127.0.0.1:0", live).expect("serve");
    let (m, body) = scrape(server.addr());
    let at = |series: &str| {
        *m.get(series)
            .unwrap_or_else(|| panic!("no {series} in\n{body}"))
    };
    assert_eq!(at("plumbline_items_in_total"), 50.0);
    assert_eq!(at("plumbline_items_out_total"), 42.0);
    assert_eq!(at("plumbline_in_flight"), 8.0);
    assert_eq!(at("plumbline_late_sends_total"), 3.0);
    assert_eq!(at("plumbline_target_rate_per_second"), 250.0);
    assert_eq!(at("plumbline_items_planned"), 1000.0);
    assert!(at("plumbline_rate_out_per_second") > 0.0);
    assert!(at("plumbline_rate_in_per_second") > at("plumbline_rate_out_per_second"));
    assert!(at("plumbline_elapsed_seconds") > 0.0);
    assert_eq!(at("plumbline_latency_seconds_bucket{le=\"0.05\"}"), 50.0);
    assert_eq!(at("plumbline_latency_seconds_count"), 100.0);
    assert_eq!(at("plumbline_worker_items_total{worker=\"0\"}"), 30.0);
    assert_eq!(at("plumbline_worker_items_total{worker=\"1\"}"), 12.0);
    assert_eq!(
        at("plumbline_partition_items_total{partition=\"p\\\"0\\\"\\\\\\n\"}"),
        40.0
    );
    assert_eq!(at("plumbline_partition_items_total{partition=\"p1\"}"), 2.0);
    assert_eq!(
        at("plumbline_run_info{label=\"run 1/1: \\\"quoted\\\" \\\\ and\\nnewline\"}"),
        1.0
    );
}

#[test]
fn metrics_before_anything_happened_are_still_valid() {
    let server = serve("127.0.0.1:0", Arc::new(Live::new())).expect("serve");
    let m = parse_exposition(&get(server.addr(), "/metrics").body);
    assert_eq!(m["plumbline_rate_in_per_second"], 0.0);
    assert_eq!(m["plumbline_run_info{label=\"\"}"], 1.0);
    assert!(!m.contains_key("plumbline_target_rate_per_second"));
}

#[test]
fn events_send_a_snapshot_at_once_then_every_second() {
    let live = live();
    let server = serve("127.0.0.1:0", live.clone()).expect("serve");
    let opened = Instant::now();
    let mut events = Events::open(server.addr());
    let first = events.snapshot();
    assert!(
        opened.elapsed() < Duration::from_millis(500),
        "the first event comes on connect"
    );
    let first_at = Instant::now();
    live.items_out.store(17, Ordering::Relaxed);
    live.tick();
    let second = events.snapshot();
    let gap = first_at.elapsed();
    assert!(
        gap > Duration::from_millis(700) && gap < Duration::from_millis(2000),
        "{gap:?} between events"
    );
    assert_eq!(first.items_out, 0);
    assert_eq!(second.items_out, 17);
    assert_eq!(second.recent.len(), first.recent.len() + 1);
    assert!(second.run.label.starts_with("run 1/1"));
}

#[test]
fn dropping_the_server_with_a_client_connected_returns_promptly() {
    let server = serve("127.0.0.1:0", live()).expect("serve");
    let addr = server.addr();
    let mut events = Events::open(addr);
    events.snapshot();
    let dropping = Instant::now();
    drop(server);
    assert!(
        dropping.elapsed() < Duration::from_secs(2),
        "drop took {:?}",
        dropping.elapsed()
    );
    // The client sees its stream end (or the connection go), not a stall.
    loop {
        match events.next() {
            Ok(Some(_)) => continue,
            Ok(None) => break,
            Err(e) => {
                assert!(
                    !matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ),
                    "the stream stalled: {e}"
                );
                break;
            }
        }
    }
    assert!(TcpStream::connect(addr).is_err(), "the port is released");
}

#[test]
fn a_port_in_use_is_an_error_naming_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let err = serve(&addr, Arc::new(Live::new())).expect_err("the port is taken");
    assert!(matches!(err, UiError::InUse { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&addr), "{message}");
    assert!(message.contains("already in use"), "{message}");
}

#[test]
fn an_unparseable_address_is_an_error_naming_it() {
    for bad in ["not an address", "127.0.0.1:99999", "127.0.0.1"] {
        let err = serve(bad, Arc::new(Live::new())).expect_err(bad);
        assert!(matches!(err, UiError::BadAddress { .. }), "{err:?}");
        assert!(err.to_string().contains(bad), "{err}");
    }
}

/// A metrics endpoint on a fresh loopback port, with a token.
fn metrics_endpoint(live: Arc<Live>) -> plumbline_ui::UiServer {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    serve_metrics(listener, live, Some("s3cret".into())).expect("serve")
}

#[test]
fn a_metrics_endpoint_serves_the_same_exposition_to_this_host_and_404_elsewhere() {
    let live = live();
    live.set_per_worker(&[30, 12]);
    let page = serve("127.0.0.1:0", live.clone()).expect("serve");
    let server = metrics_endpoint(live);
    // A scraper on this host needs no token.
    let (m, _) = scrape(server.addr());
    assert_eq!(m["plumbline_worker_items_total{worker=\"1\"}"], 12.0);
    // The live page's /metrics is the same writer: the same series.
    let on_page = parse_exposition(&get(page.addr(), "/metrics").body);
    let names = |m: &std::collections::BTreeMap<String, f64>| {
        m.keys()
            .filter(|k| !k.starts_with("plumbline_elapsed"))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&m), names(&on_page));
    for other in ["/", "/events", "/snapshot.json", "/metrics/x"] {
        assert_eq!(get(server.addr(), other).status, 404, "{other}");
    }
}

#[test]
fn a_silent_peer_is_dropped_and_peers_over_the_cap_are_closed_at_once() {
    let server = metrics_endpoint(Arc::new(Live::new()));
    let opened = Instant::now();
    // Eight connections that never send a request take every slot…
    let mut silent: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(server.addr()).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // …so a ninth is closed at once, with nothing written.
    let mut ninth = TcpStream::connect(server.addr()).expect("connect");
    ninth.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let mut byte = [0u8; 1];
    assert!(matches!(ninth.read(&mut byte), Ok(0) | Err(_)));
    assert!(opened.elapsed() < Duration::from_secs(2), "closed at once");
    // The silent ones are dropped after the 2 s header timeout, freeing their slots.
    for stream in &mut silent {
        stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        let outcome = stream.read(&mut byte);
        assert!(
            matches!(&outcome, Ok(0))
                || matches!(&outcome, Err(e) if e.kind() == io::ErrorKind::ConnectionReset),
            "{outcome:?}"
        );
    }
    let waited = opened.elapsed();
    assert!(
        waited > Duration::from_millis(1500) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert_eq!(get(server.addr(), "/metrics").status, 200);
}
