//! The pipeline's wire protocol: one JSON object per length-prefixed frame, on every endpoint.
//!
//! A frame is a 4-byte big-endian length, then that many bytes of UTF-8 JSON, capped at
//! [`MAX_MESSAGE`] before anything is allocated. Every object has a `"type"`. JSON because the
//! traffic is at most a few thousand small messages a second (10 ms tasks) and a worker in any
//! language needs only a socket, `struct` and `json` (see `examples/python/worker.py`). The
//! conversation, per connection:
//!
//! ```text
//! worker → distributor   hello{protocol, role:"worker", name, task_type, threads, credits}
//!                        then ready{credits} each time it can take more
//! distributor → worker   task{id, task_type, attempt, data} … end{}      (or refused{reason})
//! worker → collector     hello{protocol, role:"worker", name} then result{…} per task
//! distributor → collector hello{protocol, role:"distributor", name}, and end{} when done
//! collector → distributor ack{id, attempt, task_type, worker} per result … finished{…}
//! ```
//!
//! A task's `data` is whatever the distributor's task made; plumbline's own tasks send
//! `{"workload": seconds, "work": "sleep"|"spin"|"hybrid:F"}` and, for a poison task (testing),
//! `"crash": true`. An `ack` names the attempt and worker of the result it answers, for logs:
//! whichever copy of a task arrives first settles it. `ready` never raises a worker's credit
//! above its hello's. Every hello may carry `token`, the run's shared secret: where the roles
//! were given one, a hello without it is refused.
//!
//! A peer that sends anything else (an unknown type, bad JSON, an oversized frame, a message out
//! of turn) is logged, counted and dropped; the run goes on. This module only encodes and
//! decodes: who may send what when is each role's business.

use std::io::{Read, Write};

use bytes::Bytes;
use plumbline_core::frame::{FrameAtOffset, FrameCodec, FrameReader};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Bumped when messages change; a hello with another version is refused.
pub const PROTOCOL: u32 = 1;
/// Largest message, in bytes of JSON. Task descriptors are small; bulk data goes by reference.
pub const MAX_MESSAGE: usize = 1 << 20;

/// Who is saying hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Worker,
    Distributor,
}

/// One message of the protocol (see the module doc for who sends which).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Message {
    Hello {
        protocol: u32,
        role: Role,
        name: String,
        /// Workers only, to the distributor: the task type they execute.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task_type: Option<String>,
        /// Workers only: how many tasks run at once.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        threads: Option<u32>,
        /// Workers only: how many tasks the distributor may send before the next `ready`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        credits: Option<u32>,
        /// The run's shared secret, where the roles were given one (`--token`): a peer
        /// without it is refused, so nobody else on the host can join, feed results or take
        /// the ACKs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    Refused {
        reason: String,
    },
    /// Worker → distributor: `credits` more tasks may come (one per finished task).
    Ready {
        credits: u32,
    },
    Task {
        id: u64,
        task_type: String,
        /// 1 on first delivery; more after a lease was lost.
        attempt: u32,
        data: Value,
    },
    Result {
        id: u64,
        task_type: String,
        attempt: u32,
        worker: String,
        /// Unix ns when the worker started and finished the task.
        started_ns: u64,
        finished_ns: u64,
        #[serde(default)]
        data: Value,
    },
    Ack {
        id: u64,
        attempt: u32,
        task_type: String,
        worker: String,
    },
    /// Distributor → workers and collector: the run is over.
    End {},
    /// Collector → distributor, answering `end`.
    Finished {
        results: u64,
        duplicates: u64,
    },
}

impl Message {
    /// The message's type, for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "hello",
            Message::Refused { .. } => "refused",
            Message::Ready { .. } => "ready",
            Message::Task { .. } => "task",
            Message::Result { .. } => "result",
            Message::Ack { .. } => "ack",
            Message::End {} => "end",
            Message::Finished { .. } => "finished",
        }
    }

    /// Appends this message as one frame to `out`, so several can go out in one write.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        let json = serde_json::to_vec(self).map_err(WireError::Json)?;
        FrameCodec::new(MAX_MESSAGE)
            .encode_into(&json, out)
            .map_err(|e| WireError::Io(std::io::Error::other(e)))
    }

    /// Writes this message as one frame.
    pub fn send(&self, out: &mut impl Write) -> Result<(), WireError> {
        let mut frame = Vec::new();
        self.encode_into(&mut frame)?;
        out.write_all(&frame)?;
        out.flush()?;
        Ok(())
    }
}

/// Builds the hello a worker sends the distributor.
pub fn worker_hello(
    name: &str,
    task_type: &str,
    threads: u32,
    credits: u32,
    token: Option<&str>,
) -> Message {
    Message::Hello {
        protocol: PROTOCOL,
        role: Role::Worker,
        name: name.to_string(),
        task_type: Some(task_type.to_string()),
        threads: Some(threads),
        credits: Some(credits),
        token: token.map(str::to_string),
    }
}

/// Builds the hello without a task type: a worker to the collector, or the distributor.
pub fn plain_hello(role: Role, name: &str, token: Option<&str>) -> Message {
    Message::Hello {
        protocol: PROTOCOL,
        role,
        name: name.to_string(),
        task_type: None,
        threads: None,
        credits: None,
        token: token.map(str::to_string),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection closed")]
    Closed,
    #[error(transparent)]
    Frame(#[from] FrameAtOffset),
    #[error("not a pipeline message: {0}")]
    Json(serde_json::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A reset connection or one cut mid-frame is a peer gone (a process killed), not a peer
/// breaking the protocol: it comes back as [`WireError::Io`].
fn lost_or_bad(e: FrameAtOffset) -> WireError {
    use plumbline_core::frame::FrameError;
    match e.source {
        FrameError::Io(io) => WireError::Io(io),
        FrameError::Truncated { .. } | FrameError::TruncatedHeader { .. } => WireError::Io(
            std::io::Error::new(std::io::ErrorKind::UnexpectedEof, e.to_string()),
        ),
        _ => WireError::Frame(e),
    }
}

/// Decodes one frame's bytes.
pub fn decode(frame: &[u8]) -> Result<Message, WireError> {
    serde_json::from_slice(frame).map_err(WireError::Json)
}

/// Reads messages from a stream, a batch per read.
pub struct MessageReader<R> {
    frames: FrameReader<R>,
    batch: Vec<Bytes>,
    next: usize,
}

impl<R: Read> MessageReader<R> {
    pub fn new(stream: R) -> Self {
        Self {
            frames: FrameReader::new(stream, FrameCodec::new(MAX_MESSAGE)),
            batch: Vec::new(),
            next: 0,
        }
    }

    /// The next message; [`WireError::Closed`] when the peer closed cleanly between messages.
    pub fn recv(&mut self) -> Result<Message, WireError> {
        if self.next == self.batch.len() {
            self.batch.clear();
            self.next = 0;
            match self.frames.read_batch(&mut self.batch) {
                Ok(true) => {}
                Ok(false) => return Err(WireError::Closed),
                Err(e) => return Err(lost_or_bad(e)),
            }
        }
        self.next += 1;
        decode(&self.batch[self.next - 1])
    }
}

/// Whether a hello's token is the one the run expects (none expected: any). Compared in
/// constant time over the expected length, so a peer cannot guess it byte by byte.
pub fn token_ok(expected: Option<&str>, given: Option<&str>) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    let given = given.unwrap_or_default().as_bytes();
    let expected = expected.as_bytes();
    let mut diff = u8::from(given.len() != expected.len());
    for (i, e) in expected.iter().enumerate() {
        diff |= e ^ given.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_documented_shapes_are_what_goes_on_the_wire() {
        let mut buf = Vec::new();
        Message::Ready { credits: 2 }.encode_into(&mut buf).unwrap();
        assert_eq!(&buf[..4], &(buf.len() as u32 - 4).to_be_bytes());
        assert_eq!(&buf[4..], br#"{"type":"ready","credits":2}"#);
        let hello: Message = decode(
            br#"{"type":"hello","protocol":1,"role":"worker","name":"py","task_type":"C","threads":1,"credits":2}"#,
        )
        .unwrap();
        assert_eq!(hello, worker_hello("py", "C", 1, 2, None));
        assert_eq!(decode(br#"{"type":"end"}"#).unwrap(), Message::End {});
    }

    #[test]
    fn unknown_types_fields_and_junk_are_errors() {
        for bad in [
            &br#"{"type":"nope"}"#[..],
            br#"{"type":"ready","credits":1,"extra":2}"#,
            br#"{"type":"ready","credits":-1}"#,
            b"\xff\x00",
            b"[]",
        ] {
            assert!(matches!(decode(bad), Err(WireError::Json(_))), "{bad:?}");
        }
    }

    #[test]
    fn oversized_frames_are_refused_before_allocating() {
        let mut stream = ((MAX_MESSAGE as u32) + 1).to_be_bytes().to_vec();
        stream.extend_from_slice(b"{}");
        let err = MessageReader::new(&stream[..]).recv().unwrap_err();
        assert!(err.to_string().contains("exceeds"), "{err}");
    }

    proptest! {
        #[test]
        fn tasks_round_trip(id: u64, attempt: u32, ms in 0u32..100_000, t in "[a-z]{1,8}") {
            let sent = Message::Task {
                id,
                task_type: t,
                attempt,
                data: serde_json::json!({ "workload_ms": ms }),
            };
            let mut buf = Vec::new();
            sent.encode_into(&mut buf).unwrap();
            Message::End {}.encode_into(&mut buf).unwrap();
            let mut reader = MessageReader::new(&buf[..]);
            prop_assert_eq!(reader.recv().unwrap(), sent);
            prop_assert_eq!(reader.recv().unwrap(), Message::End {});
            prop_assert!(matches!(reader.recv(), Err(WireError::Closed)));
        }
    }

    #[test]
    fn a_token_must_match_exactly_when_one_is_expected() {
        assert!(token_ok(None, None));
        assert!(token_ok(None, Some("anything")));
        assert!(token_ok(Some("s3cret"), Some("s3cret")));
        for wrong in [
            None,
            Some(""),
            Some("s3cre"),
            Some("s3cret!"),
            Some("S3cret"),
        ] {
            assert!(!token_ok(Some("s3cret"), wrong), "{wrong:?}");
        }
    }
}
