//! A joining worker: joins through the initializer's control port (at formation, or with
//! `--join-running` a cluster already running), opens its data connection, processes the
//! frames of the partitions it owns, hands a partition's state over or installs one when the
//! data link says so (in-band, so in order with the items), reports stats every second (whole
//! figures within half a second of input pausing), and
//! finishes when the initializer says the input has ended, or that it leaves. Losing the
//! initializer is an error. Which partitions move, and when, is the initializer's decision.

use std::net::TcpStream;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError};

use plumbline_core::frame::{FrameCodec, FrameReader};
use plumbline_core::Shutdown;
use plumbline_transport::tcp;

use super::wire::{Control, ControlReader, DataMessage, WireError, WorkerStats, PROTOCOL};
use super::{app_name, io, NodeConfig, NodeError, Processor};

pub(super) fn run(
    config: &NodeConfig,
    control_addr: &str,
    token: Option<&str>,
    running: bool,
    stop: &Shutdown,
) -> Result<WorkerStats, NodeError> {
    let control = tcp::connect(control_addr, config.connect_timeout)?;
    Control::Join {
        name: config.name.clone(),
        app: app_name(config.app).into(),
        partitions: config.partitions,
        balanced: config.balanced,
        protocol: PROTOCOL,
        token: token.map(str::to_string),
        running,
    }
    .send(&mut &control)?;
    tracing::info!("[{}] joining the cluster at {control_addr}", config.name);
    let mut replies = ControlReader::new(control.try_clone().map_err(io("control connection"))?);
    let (data_addr, ticket, max_frame) = match replies.recv() {
        Ok(Control::Welcome {
            workers,
            data,
            ticket,
            max_frame,
        }) => {
            tracing::info!(
                "[{}] joined a cluster of {}: {}",
                config.name,
                workers.len(),
                workers.join(", ")
            );
            (data, ticket, max_frame)
        }
        Ok(Control::Refused { reason }) => {
            return Err(NodeError::Refused(format!(
                "the initializer refused this worker: {reason}"
            )))
        }
        Ok(other) => {
            return Err(NodeError::InitializerLost(format!(
                "unexpected {}",
                other.kind()
            )))
        }
        Err(e) => return Err(NodeError::InitializerLost(e.to_string())),
    };
    let data = tcp::connect(&data_addr, config.connect_timeout)?;
    Control::DataHello {
        name: config.name.clone(),
        ticket,
    }
    .send(&mut &data)?;
    // Control from the initializer arrives on its own thread: Finish, or the connection's end.
    let (finish_tx, finish) = mpsc::channel::<Result<(), String>>();
    std::thread::spawn(move || {
        let outcome = match replies.recv() {
            Ok(Control::Finish) => Ok(()),
            Ok(other) => Err(format!("unexpected {}", other.kind())),
            Err(WireError::Closed) => Err("its control connection closed".into()),
            Err(e) => Err(e.to_string()),
        };
        let _ = finish_tx.send(outcome);
    });
    let control = Arc::new(Mutex::new(control));
    let reporter = spawn_reporter(control.clone());

    // Whole figures at most every 500 ms while items flow, so the reporter's once-a-second
    // send is never staler than that; fresh counts whenever input pauses.
    let mut processor =
        Processor::new(config)?.publishing(Duration::from_millis(500), move |stats| {
            if let Ok(mut latest) = reporter.lock() {
                *latest = Some(stats);
            }
        });
    let input = spawn_reader(data, max_frame);
    let ended = loop {
        if stop.requested() {
            break Err("interrupted before the cluster shut down".to_string());
        }
        let batch = match input.recv_timeout(IDLE) {
            Ok(Input::Batch(batch)) => batch,
            Ok(Input::Ended) => break Ok(()),
            Ok(Input::Failed(why)) => break Err(why),
            // Input paused: whole figures, so watchers see this worker's step histogram
            // complete, not as of its last publish while items flowed.
            Err(RecvTimeoutError::Timeout) => {
                processor.publish();
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break Err("its data reader stopped".into()),
        };
        for frame in batch {
            let message = DataMessage::decode(frame)
                .map_err(|e| NodeError::InitializerLost(format!("its data connection sent {e}")))?;
            match message {
                DataMessage::Item(frame) => {
                    processor.process(&frame);
                }
                DataMessage::Handover(partition) => {
                    let state = processor.take_state(partition);
                    let stream = control.lock().unwrap_or_else(|p| p.into_inner());
                    Control::StateOut { partition, state }.send(&mut &*stream)?;
                }
                DataMessage::Install { partition, state } => {
                    processor.install_state(&state).map_err(|e| {
                        NodeError::InitializerLost(format!(
                            "the state installed for partition {partition}: {e}"
                        ))
                    })?;
                }
            }
        }
        processor.flush();
    };
    ended.map_err(NodeError::InitializerLost)?;
    // The data stream ended; only a Finish makes that a shutdown rather than a lost initializer.
    match finish.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(())) => {}
        Ok(Err(why)) => return Err(NodeError::InitializerLost(why)),
        Err(_) => {
            return Err(NodeError::InitializerLost(
                "no Finish after the data ended".into(),
            ))
        }
    }
    processor.finish();
    let stats = processor.stats();
    let control = control.lock().unwrap_or_else(|p| p.into_inner());
    Control::Done(stats.clone()).send(&mut &*control)?;
    tracing::info!(
        "[{}] done: {} items, {} results",
        config.name,
        stats.items,
        stats.results
    );
    Ok(stats)
}

/// How long the data connection may be quiet before the worker sends its whole figures.
const IDLE: Duration = Duration::from_millis(500);

/// Batches read ahead of the worker before its reader waits.
const READ_AHEAD: usize = 64;

/// What the data connection's reader hands the worker.
enum Input {
    /// The frames of one socket read.
    Batch(Vec<Bytes>),
    Ended,
    Failed(String),
}

/// Reads the data connection on its own thread, one socket read's frames at a time (frames the
/// initializer accepted, a tag byte ahead), so the worker also wakes while input pauses. The
/// frames before a bad one are handed over before the failure.
fn spawn_reader(data: TcpStream, max_frame: usize) -> Receiver<Input> {
    let (batches, input) = bounded(READ_AHEAD);
    std::thread::spawn(move || {
        let mut reader = FrameReader::new(&data, FrameCodec::new(max_frame.saturating_add(1)));
        loop {
            let mut batch = Vec::new();
            let read = reader.read_batch(&mut batch);
            if !batch.is_empty() && batches.send(Input::Batch(batch)).is_err() {
                return;
            }
            let end = match read {
                Ok(true) => continue,
                Ok(false) => Input::Ended,
                Err(e) => Input::Failed(format!("its data connection failed: {e}")),
            };
            let _ = batches.send(end);
            return;
        }
    });
    input
}

/// Sends the latest stats to the initializer once a second; returns the slot to put them in.
fn spawn_reporter(control: Arc<Mutex<TcpStream>>) -> Arc<Mutex<Option<WorkerStats>>> {
    let latest = Arc::new(Mutex::new(None::<WorkerStats>));
    let slot = latest.clone();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_secs(1));
        let Some(stats) = slot.lock().ok().and_then(|mut s| s.take()) else {
            continue;
        };
        let stream = control.lock().unwrap_or_else(|p| p.into_inner());
        if Control::Stats(stats).send(&mut &*stream).is_err() {
            return;
        }
    });
    latest
}
