//! The cluster's control protocol: JSON messages in ordinary length-prefixed frames.
//!
//! Control traffic is rare (joins, a stats report a second, shutdown), so it is JSON for
//! readability; data traffic is the input frames themselves, forwarded unchanged. Frames here are
//! capped at [`MAX_CONTROL`] like every decoder of outside bytes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use plumbline_core::frame::{FrameCodec, FrameError, FrameReader};
use plumbline_core::intake::{ByteBudget, IntakeLimits};
use plumbline_measure::LatencySummary;
use serde::{Deserialize, Serialize};

/// Bumped when the control or data protocol changes; a join with another version is refused.
/// 2: data-link frames are tagged ([`DataMessage`]), so a partition's state can move in-band.
pub const PROTOCOL: u32 = 2;
/// Largest control message.
pub const MAX_CONTROL: usize = 1 << 20;

/// What a worker reports about itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerStats {
    pub name: String,
    /// Items this worker processed.
    pub items: u64,
    /// Results it wrote to the sink.
    pub results: u64,
    /// Items it could not apply, and results it could not deliver.
    pub rejected: u64,
    pub undelivered: u64,
    /// What each item's work cost.
    pub step: Option<LatencySummary>,
}

/// Deliberately not `Debug`: a join and a shutdown request carry the token; log
/// [`Control::kind`].
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Control {
    /// Joiner → initializer, first message on the control connection.
    Join {
        name: String,
        app: String,
        partitions: u32,
        /// Load-balanced tasks rather than keyed state.
        balanced: bool,
        protocol: u32,
        /// The cluster's token, where the joiner was given one; an initializer with a token
        /// refuses a join without the same one.
        #[serde(default)]
        token: Option<String>,
        /// Joins a cluster that is already running (`--join-running`): it grows by this
        /// worker and partitions move to it. A join without it after formation is refused.
        #[serde(default)]
        running: bool,
    },
    Refused {
        reason: String,
    },
    /// Initializer → joiner: the cluster (partition p belongs to `workers[p % n]`) and where to
    /// open the data connection.
    Welcome {
        workers: Vec<String>,
        data: String,
        /// Proves a data connection is this joiner's.
        ticket: u64,
        /// The largest frame the data connection will carry.
        max_frame: usize,
    },
    /// Joiner → initializer, first message on the data connection.
    DataHello {
        name: String,
        ticket: u64,
    },
    Stats(WorkerStats),
    /// Joiner → initializer: the state of a partition it handed over, after applying every
    /// item of the partition its data link delivered before the handover.
    StateOut {
        partition: u32,
        state: Vec<u8>,
    },
    /// Initializer → joiner: input has ended; finish what the data connection delivered.
    Finish,
    Done(WorkerStats),
    /// `plumbline shutdown` → initializer's external port.
    Shutdown {
        token: Option<String>,
    },
    /// `plumbline shrink` → initializer's external port: `worker` hands its partitions over
    /// and leaves.
    Shrink {
        worker: String,
        token: Option<String>,
    },
    Reply {
        ok: bool,
        message: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection closed")]
    Closed,
    #[error(transparent)]
    Frame(#[from] plumbline_core::frame::FrameAtOffset),
    #[error("not a control message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("no {what} within {within:?} ({received} bytes arrived)")]
    NoHello {
        what: &'static str,
        within: Duration,
        received: u64,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Control {
    /// The message's type, for logs: never its fields, which may hold a token.
    pub fn kind(&self) -> &'static str {
        match self {
            Control::Join { .. } => "join",
            Control::Refused { .. } => "refused",
            Control::Welcome { .. } => "welcome",
            Control::DataHello { .. } => "data hello",
            Control::Stats(_) => "stats",
            Control::StateOut { .. } => "state out",
            Control::Finish => "finish",
            Control::Done(_) => "done",
            Control::Shutdown { .. } => "shutdown",
            Control::Shrink { .. } => "shrink",
            Control::Reply { .. } => "reply",
        }
    }

    /// Writes one message as a frame.
    pub fn send(&self, out: &mut impl Write) -> Result<(), WireError> {
        let json = serde_json::to_vec(self)?;
        let mut frame = Vec::with_capacity(json.len() + 4);
        FrameCodec::new(MAX_CONTROL)
            .encode_into(&json, &mut frame)
            .map_err(std::io::Error::other)?;
        out.write_all(&frame)?;
        out.flush()?;
        Ok(())
    }
}

/// What the initializer's data link carries to a joiner, one frame each: a tag byte, then
/// an input frame as a source sent it, or a partition's migration step. In-band, so a
/// handover comes after every item routed before it and an install before every item after.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataMessage {
    Item(Bytes),
    /// Apply what came before, then send the partition's state back ([`Control::StateOut`]).
    Handover(u32),
    /// Start the partition from this state (as [`crate::app::PartitionState::take`] encodes it).
    Install {
        partition: u32,
        state: Bytes,
    },
}

const ITEM: u8 = 0;
const HANDOVER: u8 = 1;
const INSTALL: u8 = 2;

/// A data-link frame that is none of [`DataMessage`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    #[error("an empty data frame")]
    Empty,
    #[error("data frame tag {0} is unknown")]
    Tag(u8),
    #[error("a {what} frame of {len} bytes is too short")]
    Short { what: &'static str, len: usize },
}

impl DataMessage {
    /// The tag and body bytes this message is framed from (the body borrowed, not copied).
    pub fn parts(&self) -> ([u8; 5], usize, &[u8]) {
        let mut head = [0u8; 5];
        match self {
            DataMessage::Item(frame) => {
                head[0] = ITEM;
                (head, 1, frame)
            }
            DataMessage::Handover(p) => {
                head[0] = HANDOVER;
                head[1..].copy_from_slice(&p.to_be_bytes());
                (head, 5, &[])
            }
            DataMessage::Install { partition, state } => {
                head[0] = INSTALL;
                head[1..].copy_from_slice(&partition.to_be_bytes());
                (head, 5, state)
            }
        }
    }

    /// Writes this message as one length-prefixed frame.
    pub fn write_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        let (head, head_len, body) = self.parts();
        out.write_all(&((head_len + body.len()) as u32).to_be_bytes())?;
        out.write_all(&head[..head_len])?;
        out.write_all(body)
    }

    pub fn decode(frame: Bytes) -> Result<Self, DataError> {
        let tag = *frame.first().ok_or(DataError::Empty)?;
        let partition = |what| {
            frame
                .get(1..5)
                .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
                .ok_or(DataError::Short {
                    what,
                    len: frame.len(),
                })
        };
        match tag {
            ITEM => Ok(DataMessage::Item(frame.slice(1..))),
            HANDOVER => Ok(DataMessage::Handover(partition("handover")?)),
            INSTALL => Ok(DataMessage::Install {
                partition: partition("install")?,
                state: frame.slice(5..),
            }),
            other => Err(DataError::Tag(other)),
        }
    }
}

/// Reads the message a peer must open with (a join, a data hello, a shutdown request), due
/// within `within` of now however the peer trickles it; [`WireError::NoHello`] names the wait.
/// The stream's read timeout is cleared afterwards.
pub fn recv_hello(
    stream: &TcpStream,
    within: Duration,
    what: &'static str,
) -> Result<Control, WireError> {
    let limits = IntakeLimits::new(within, 0, Arc::new(ByteBudget::new(MAX_CONTROL)));
    stream.set_read_timeout(Some(limits.tick()))?;
    let frames = FrameReader::new(stream, FrameCodec::new(MAX_CONTROL))
        .limited(&limits)
        .first_frame_due();
    let result = ControlReader { frames }.recv();
    stream.set_read_timeout(None)?;
    match result {
        Err(WireError::Frame(e)) if matches!(e.source, FrameError::Stalled(_)) => {
            Err(WireError::NoHello {
                what,
                within,
                received: e.received,
            })
        }
        other => other,
    }
}

/// Reads control messages from a stream.
pub struct ControlReader<R> {
    frames: FrameReader<R>,
}

impl<R: Read> ControlReader<R> {
    pub fn new(stream: R) -> Self {
        Self {
            frames: FrameReader::new(stream, FrameCodec::new(MAX_CONTROL)),
        }
    }

    /// The next message; [`WireError::Closed`] when the peer closed cleanly.
    pub fn recv(&mut self) -> Result<Control, WireError> {
        let frame: Bytes = self.frames.next().ok_or(WireError::Closed)??;
        Ok(serde_json::from_slice(&frame)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_named() {
        let mut buf = Vec::new();
        Control::Join {
            name: "roo".into(),
            app: "votes".into(),
            partitions: 26,
            balanced: false,
            protocol: PROTOCOL,
            token: None,
            running: false,
        }
        .send(&mut buf)
        .unwrap();
        Control::Finish.send(&mut buf).unwrap();
        let mut reader = ControlReader::new(&buf[..]);
        assert!(matches!(
            reader.recv().unwrap(),
            Control::Join { partitions: 26, .. }
        ));
        assert!(matches!(reader.recv().unwrap(), Control::Finish));
        assert!(matches!(reader.recv(), Err(WireError::Closed)));
        let mut junk = Vec::new();
        FrameCodec::default()
            .encode_into(b"{\"type\":\"nope\"}", &mut junk)
            .unwrap();
        assert!(matches!(
            ControlReader::new(&junk[..]).recv(),
            Err(WireError::Json(_))
        ));
    }

    #[test]
    fn data_messages_round_trip_in_frames_and_bad_ones_are_named() {
        let messages = [
            DataMessage::Item(Bytes::from_static(b"nonce")),
            DataMessage::Handover(7),
            DataMessage::Install {
                partition: 3,
                state: Bytes::from_static(&[1; 20]),
            },
            DataMessage::Item(Bytes::new()),
        ];
        let mut buf = Vec::new();
        for m in &messages {
            m.write_to(&mut buf).unwrap();
        }
        let frames = FrameReader::new(&buf[..], FrameCodec::default());
        let back: Vec<DataMessage> = frames
            .map(|f| DataMessage::decode(f.unwrap()).unwrap())
            .collect();
        assert_eq!(back, messages);
        assert_eq!(DataMessage::decode(Bytes::new()), Err(DataError::Empty));
        assert_eq!(
            DataMessage::decode(Bytes::from_static(&[9])),
            Err(DataError::Tag(9))
        );
        assert_eq!(
            DataMessage::decode(Bytes::from_static(&[1, 0, 0])),
            Err(DataError::Short {
                what: "handover",
                len: 3
            })
        );
    }

    #[test]
    fn a_hello_trickled_past_its_deadline_is_named() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let trickle = std::thread::spawn(move || {
            // A byte every 100 ms never finishes a frame: each read is on time, the hello is not.
            for byte in [0u8, 0, 0, 200, b'{'] {
                if client.write_all(&[byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let started = std::time::Instant::now();
        let Err(err) = recv_hello(&server, Duration::from_millis(300), "join") else {
            panic!("a trickled hello was taken");
        };
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(
            err.to_string().starts_with("no join within 300ms ("),
            "{err}"
        );
        trickle.join().unwrap();
    }
}
