//! A worker process's result stream: results buffered for its `--out` sink (a receiver over TCP,
//! or a broker), flushed when input pauses and at least every [`FLUSH_EVERY`], and counted:
//! a result is delivered once a flush took it, undelivered once the sink is gone. What a result
//! says and when an input may be acknowledged are the processor's and the consumer's.

use std::io::{BufWriter, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use plumbline_transport::broker::{connect_producer, FramePublisher};
use plumbline_transport::config::TransportConfig;
use plumbline_transport::tcp;

use super::{NodeConfig, NodeError};

/// Longest a result waits in the sink buffer while input keeps coming: long enough to batch
/// writes at a million results a second, short against any latency worth measuring.
pub const FLUSH_EVERY: Duration = Duration::from_millis(1);

/// Longest a broker sink may take to acknowledge the last results.
const FINISH_TIMEOUT: Duration = Duration::from_secs(60);

/// The `--out` sink failed: results written since the last delivery did not all reach it.
#[derive(Debug)]
pub(super) struct SinkLost(pub String);

/// Where results go: a receiver over TCP (`host:port`), or a broker (a URL).
enum Sink {
    Tcp(BufWriter<TcpStream>),
    Broker(BufWriter<FramePublisher>),
}

impl Sink {
    fn connect(out: &str, config: &NodeConfig) -> Result<Sink, NodeError> {
        if !out.contains("://") {
            let stream = tcp::connect(out, config.connect_timeout)?;
            return Ok(Sink::Tcp(BufWriter::with_capacity(64 * 1024, stream)));
        }
        let broker = |source| NodeError::Broker {
            what: format!("--out {out}"),
            source,
        };
        let target: TransportConfig = out
            .parse()
            .map_err(|e| NodeError::Refused(format!("--out: {e}")))?;
        let producer = connect_producer(&target, &config.out_options).map_err(broker)?;
        let publisher = FramePublisher::new(producer, config.max_frame);
        Ok(Sink::Broker(BufWriter::with_capacity(64 * 1024, publisher)))
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Sink::Tcp(w) => w,
            Sink::Broker(w) => w,
        }
    }
}

/// Whether a receiver that never writes back has closed its end: a write into the socket
/// buffer succeeds for a while after the peer died, but its FIN or RST is already here.
fn peer_gone(stream: &TcpStream) -> Option<String> {
    if stream.set_nonblocking(true).is_err() {
        return None;
    }
    let seen = stream.peek(&mut [0u8; 1]);
    stream.set_nonblocking(false).ok();
    match seen {
        Ok(0) => Some("the receiver closed the connection".into()),
        Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => Some(e.to_string()),
        _ => None,
    }
}

/// One worker's results on their way to its sink.
pub(super) struct Outbox {
    name: String,
    sink: Option<Sink>,
    /// An `--out` was given: results without a sink are then undelivered, not dropped.
    wants_sink: bool,
    last_flush: Instant,
    /// Results written to the sink's buffer since the last successful flush: delivered only
    /// once the flush succeeds.
    pending: u64,
    /// Why the sink was lost, once it was.
    lost: Option<String>,
    /// Results that reached the sink (or, without an `--out`, were counted and dropped).
    pub results: u64,
    /// Results that did not, the sink being gone.
    pub undelivered: u64,
}

impl Outbox {
    pub fn open(config: &NodeConfig) -> Result<Self, NodeError> {
        let sink = match &config.out {
            Some(out) => Some(Sink::connect(out, config)?),
            None => None,
        };
        Ok(Self {
            name: config.name.clone(),
            wants_sink: sink.is_some(),
            sink,
            last_flush: Instant::now(),
            pending: 0,
            lost: None,
            results: 0,
            undelivered: 0,
        })
    }

    /// Writes one result frame (`head`, then `text`) to the sink's buffer.
    pub fn emit(&mut self, head: &[u8], text: &[u8]) {
        let Some(sink) = &mut self.sink else {
            if self.wants_sink {
                self.undelivered += 1;
            } else {
                self.results += 1;
            }
            return;
        };
        let len = (head.len() + text.len()) as u32;
        let sink = sink.writer();
        let written = sink
            .write_all(&len.to_be_bytes())
            .and_then(|()| sink.write_all(head))
            .and_then(|()| sink.write_all(text));
        match written {
            Ok(()) => self.pending += 1,
            Err(e) => self.sink_failed(&e, 1),
        }
    }

    /// Flushes if results wait and the last flush is [`FLUSH_EVERY`] old: at items of 1 ms or
    /// more, every result leaves as the next item starts; at a million a second, in batches.
    pub fn flush_if_due(&mut self) {
        if self.pending > 0 && self.last_flush.elapsed() >= FLUSH_EVERY {
            self.flush();
        }
    }

    /// Pushes buffered results out.
    pub fn flush(&mut self) {
        self.last_flush = Instant::now();
        let Some(sink) = &mut self.sink else {
            return;
        };
        match sink.writer().flush() {
            Ok(()) => self.results += std::mem::take(&mut self.pending),
            Err(e) => self.sink_failed(&e, 0),
        }
    }

    /// The sink is gone: what was buffered and `more` results are undelivered, and so is
    /// every result after them.
    fn sink_failed(&mut self, error: &std::io::Error, more: u64) {
        tracing::warn!(
            "[{}] the sink failed ({error}); results are counted as undelivered",
            self.name
        );
        self.lost.get_or_insert_with(|| error.to_string());
        self.sink = None;
        self.undelivered += std::mem::take(&mut self.pending) + more;
    }

    /// Makes every result so far reach the sink: flushed, and for a broker sink acknowledged
    /// by the broker. Only then may the inputs they came from be acknowledged; an error means
    /// the sink is gone (now or earlier), and some of those results never got there.
    pub fn deliver(&mut self) -> Result<(), SinkLost> {
        self.flush();
        let gone = match &mut self.sink {
            Some(Sink::Broker(out)) => out
                .get_mut()
                .finish(FINISH_TIMEOUT)
                .err()
                .map(|e| e.to_string()),
            Some(Sink::Tcp(out)) => peer_gone(out.get_ref()),
            None => None,
        };
        if let Some(why) = gone {
            self.sink_failed(&std::io::Error::other(why), 0);
        }
        match (&self.sink, &self.lost) {
            (None, Some(why)) if self.wants_sink => Err(SinkLost(why.clone())),
            _ => Ok(()),
        }
    }

    /// Flushes, then waits for a broker sink's acks: results it refused are undelivered.
    pub fn finish(&mut self) {
        self.flush();
        if let Some(Sink::Broker(out)) = &mut self.sink {
            if let Err(e) = out.get_mut().finish(FINISH_TIMEOUT) {
                tracing::warn!("[{}] the result broker: {e}", self.name);
                let stats = out.get_ref().producer().stats();
                self.undelivered += stats.sent - stats.acked;
                self.results = self.results.saturating_sub(stats.sent - stats.acked);
            }
        }
    }
}
