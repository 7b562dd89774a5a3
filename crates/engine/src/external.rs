//! A system outside plumbline as an engine: plumbline sends its framed load into one URL
//! (`to`), the system under test carries each item to another URL (`from`), and plumbline
//! reads the results back there, measuring latency from each item's intended send time, and
//! losses and duplicates by the plumbline header the system echoes.
//!
//! ```text
//!  sender ─frames─▶ to (redis/nats/kafka/tcp) ─▶ N copies of the spawn command ─▶ from ─▶ receiver
//! ```
//!
//! The worker count is applied by starting N copies of a spawn command before the run (each
//! told its index and the count in [`WORKER_INDEX`] and [`WORKERS`], and the run's URLs in
//! [`INPUT`] and [`OUTPUT`] and the `{in}`/`{out}` placeholders, and a known per-item cost in
//! [`PER_ITEM`]) and stopping them after it
//! (SIGTERM, then a kill after [`GRACE`]); a copy that exits mid-run ends the run with an error
//! naming it and its exit status. `--cluster URL` is this engine with plumbline's own
//! consumer-group members (`plumbline worker --in URL`) as the command ([`External::group`]).
//! With a worker schedule or an autoscaler ([`External::elastic`], [`crate::scaling::Elastic`]) the
//! group grows and shrinks mid-run ([`crate::members`]), and its [`Elastic`] says when each
//! change was applied and what the autoscaler saw and decided.
//!
//! Each run (a capacity trial) gets fresh stream / subject / topic names ([`renamed`]), so no
//! run inherits the previous one's backlog or late results: a fresh consumer group on the old
//! names would not do, since a Redis group or a Kafka group reads the stream from its start,
//! a JetStream work queue takes no second consumer, and results of the old run would still
//! sit in the results stream with the same sequence numbers. It does not look inside results
//! (keyed state is not checked) and does not delete the old streams.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use plumbline_core::secret::redact_url;
use plumbline_core::Shutdown;
use plumbline_load::sender::{self, SendPlan};
use plumbline_measure::Live;
use plumbline_transport::broker::{
    connect_consumer, connect_producer, ClientOptions, FramePublisher, FrameSource,
};
use plumbline_transport::config::TransportConfig;
use plumbline_worker::receiver::{Framing as ReceiveFraming, Receiver, ReceiverConfig};
use plumbline_worker::{ClusterConfig, Step};

use crate::child::Proc;
use crate::members::{Leave, Members};
use crate::scaling::{Elastic, Scaling};
use crate::{Engine, Load, RunFigures};

/// Environment variables every copy of the spawn command gets: its index (0-based), the
/// number of copies, the URL it consumes (plumbline's `to` for this run) and the one it
/// writes results to (`from`).
pub const WORKER_INDEX: &str = "PLUMBLINE_WORKER_INDEX";
pub const WORKERS: &str = "PLUMBLINE_WORKERS";
pub const INPUT: &str = "PLUMBLINE_IN";
/// The broker password of plumbline's own group members (`--cluster URL` with a login).
const MEMBER_PASSWORD: &str = "PLUMBLINE_MEMBER_PASSWORD";
pub const OUTPUT: &str = "PLUMBLINE_OUT";
/// What an item should cost a copy, in seconds (`--per-item`), when the user said.
pub const PER_ITEM: &str = "PLUMBLINE_PER_ITEM";

/// How long a copy has to exit after SIGTERM before it is killed.
pub const GRACE: Duration = Duration::from_secs(2);
/// How long to wait for missing results once nothing arrives: longer than a broker's default
/// redelivery time (5 s), so what a member redelivers still counts.
const GIVE_UP: Duration = Duration::from_secs(10);
/// How long the broker may take to acknowledge the last items sent.
const FINISH: Duration = Duration::from_secs(30);

/// The command that starts one worker of the system under test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spawn {
    words: Vec<String>,
    /// How labels and errors name it: the command as given, or "plumbline worker".
    name: String,
    /// More environment variables for every copy (`PLUMBLINE_PER_ITEM`).
    env: Vec<(String, String)>,
    /// A stderr line each copy prints once it consumes (plumbline's members say so); the run
    /// waits for it before sending. `None`: the broker holds what is sent before it consumes.
    pub ready: Option<String>,
    /// `{in}` and `{out}` are filled in without their passwords, which the copies get from
    /// their environment instead, so none shows in a process list (plumbline's members).
    hide_login: bool,
}

/// Which copy a command line is for, and the run's URLs and name (the suffix its streams
/// are renamed with).
#[derive(Clone, Copy, Debug)]
pub struct Copy<'a> {
    pub index: usize,
    pub workers: usize,
    pub input: &'a str,
    pub output: &'a str,
    pub run: &'a str,
}

impl Spawn {
    /// `command` split as a POSIX shell splits words (quotes, backslashes; no expansion).
    pub fn parse(command: &str) -> Result<Self> {
        let words = shlex::split(command)
            .with_context(|| format!("--spawn {command:?}: unbalanced quotes"))?;
        ensure!(!words.is_empty(), "--spawn needs a command");
        Ok(Self {
            words,
            name: command.trim().to_string(),
            env: Vec::new(),
            ready: None,
            hide_login: false,
        })
    }

    /// Every copy also gets `name=value` in its environment.
    pub fn with_env(mut self, name: &str, value: String) -> Self {
        self.env.push((name.into(), value));
        self
    }

    /// The command as labels and errors show it: placeholders unfilled (no URL, so no
    /// password, shows).
    pub fn shown(&self) -> &str {
        &self.name
    }

    /// The argv of one copy: `{index}`, `{workers}`, `{in}`, `{out}` and `{run}` filled in.
    pub fn argv(&self, copy: &Copy) -> Vec<String> {
        let url = |url: &str| match self.hide_login {
            true => redact_url(url),
            false => url.to_string(),
        };
        let (input, output) = (url(copy.input), url(copy.output));
        self.words
            .iter()
            .map(|word| {
                word.replace("{index}", &copy.index.to_string())
                    .replace("{workers}", &copy.workers.to_string())
                    .replace("{in}", &input)
                    .replace("{out}", &output)
                    .replace("{run}", copy.run)
            })
            .collect()
    }
}

impl Spawn {
    /// The command that starts `copy`, its environment set.
    fn command(&self, copy: &Copy) -> Command {
        let argv = self.argv(copy);
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .env(WORKER_INDEX, copy.index.to_string())
            .env(WORKERS, copy.workers.to_string())
            .env(INPUT, copy.input)
            .env(OUTPUT, copy.output)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }
}

/// `url` with its stream, subject or topic renamed `<name>-<suffix>` (query and login kept);
/// a `tcp://` URL is unchanged: a listener carries nothing from one run to the next.
pub fn renamed(url: &str, suffix: &str) -> Result<String> {
    let config: TransportConfig = url.parse()?;
    if matches!(config, TransportConfig::Tcp { .. }) {
        return Ok(url.to_string());
    }
    let (scheme, rest) = url.split_once("://").context("a URL has a scheme")?;
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    let (authority, name) = path
        .split_once('/')
        .context("a broker URL names a stream")?;
    let query = query.map_or(String::new(), |q| format!("?{q}"));
    Ok(format!("{scheme}://{authority}/{name}-{suffix}{query}"))
}

/// A tag no other engine of this machine's runs has: milliseconds since the epoch, and a
/// counter for the engines made in the same one.
fn fresh_tag() -> String {
    static MADE: AtomicU64 = AtomicU64::new(0);
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{ms:x}{}", MADE.fetch_add(1, Ordering::Relaxed))
}

/// N copies of a spawn command between two URLs.
#[derive(Debug)]
pub struct External {
    /// As given (logins kept: the copies need them); shown only through `TransportConfig`.
    to: String,
    from: String,
    pub spawn: Spawn,
    pub workers: usize,
    /// Names this engine's runs apart from any other's: `<tag>-<run>`.
    tag: String,
    runs: AtomicU64,
    /// What changes the worker count mid-run, how members leave, what the last run did.
    elastic: Option<Elastic>,
}

impl External {
    /// Checks both URLs; a `from` on `tcp://` is a listener plumbline binds (port 0: any).
    pub fn new(to: &str, from: &str, spawn: Spawn, workers: usize) -> Result<Self> {
        to.parse::<TransportConfig>().context("--to")?;
        from.parse::<TransportConfig>().context("--from")?;
        ensure!(workers > 0, "an external system needs at least 1 worker");
        Ok(Self::checked(to, from, spawn, workers))
    }

    fn checked(to: &str, from: &str, spawn: Spawn, workers: usize) -> Self {
        Self {
            to: to.into(),
            from: from.into(),
            spawn,
            workers,
            tag: fresh_tag(),
            runs: AtomicU64::new(0),
            elastic: None,
        }
    }

    /// Runs start with the scaling's first count and resize as it says (members leaving as
    /// `leave` says).
    pub fn elastic(mut self, scaling: Scaling, leave: Leave) -> Self {
        self.workers = scaling.start();
        self.elastic = Some(Elastic::new(scaling, leave));
        self
    }

    /// A broker's consumer group of plumbline's own members (`--cluster URL`): `cluster.workers`
    /// `plumbline worker --in URL` processes doing the cluster's work, each acking an item
    /// once its result reached plumbline's results listener. `url` is a broker URL that
    /// parsed (`EngineKind::Group` holds no other).
    pub fn group(url: &str, cluster: &ClusterConfig, exe: &Path) -> Self {
        let mut words: Vec<String> = [exe.to_string_lossy().as_ref(), "worker", "--in", "{in}"]
            .into_iter()
            .map(String::from)
            .collect();
        let app = match cluster.app {
            plumbline_worker::App::Votes => "votes",
            plumbline_worker::App::Count => "sleepy",
        };
        for (flag, value) in [
            ("--out", "{out}".to_string()),
            ("--name", "m{index}".to_string()),
            ("--app", app.to_string()),
            (
                "--delay",
                plumbline_core::duration::Human(cluster.delay).to_string(),
            ),
            ("--work", cluster.work.to_string()),
            ("--partitions", cluster.partitions.to_string()),
            // A group of the run's own: members of an earlier run that never left (a Kafka
            // member is not closed, see the transport) would hold a shared group's rebalance
            // until their session timeout, mid-trial.
            ("--group", "plumbline-{run}".to_string()),
        ] {
            words.extend([flag.to_string(), value]);
        }
        if cluster.step == Step::Balanced {
            words.push("--balanced".into());
        }
        // `--password` takes the place of the redacted one in `--in`.
        let password = url
            .parse::<TransportConfig>()
            .ok()
            .and_then(|config| config.access()?.password.clone());
        let mut env = Vec::new();
        if let Some(password) = password {
            words.extend(["--password".into(), format!("env:{MEMBER_PASSWORD}")]);
            env.push((MEMBER_PASSWORD.to_string(), password.expose().to_string()));
        }
        let kafka = url.starts_with("kafka://");
        if kafka {
            // A partition per member (the first member creates the run's topic): with the
            // default 3, two members split them 2 + 1 and the busier caps the group at 3/4 of
            // its ideal, and a fourth member owns none.
            words.extend(["--topic-partitions".into(), cluster.workers.to_string()]);
        }
        let spawn = Spawn {
            words,
            name: "plumbline worker".into(),
            env,
            hide_login: true,
            // A Kafka member consumes only once the group has assigned it partitions, which
            // takes a rebalance: sending before it would charge the rebalance as lag.
            ready: Some(if kafka {
                "] assigned partitions [".into()
            } else {
                "] consuming ".into()
            }),
        };
        Self::checked(url, "tcp://127.0.0.1:0", spawn, cluster.workers)
    }

    fn client(&self) -> ClientOptions {
        ClientOptions {
            consumer: format!("plumbline-{}", std::process::id()),
            group: "plumbline-results".into(),
            ..ClientOptions::default()
        }
    }
}

impl Engine for External {
    fn workers(&self) -> usize {
        self.workers
    }

    fn describe(&self) -> String {
        format!("{} × `{}`", self.workers, self.spawn.shown())
    }

    fn elastic(&self) -> Option<&Elastic> {
        self.elastic.as_ref()
    }

    fn run(&self, load: &Load, live: &Arc<Live>, stop: &Shutdown) -> Result<RunFigures> {
        let suffix = format!("{}-{}", self.tag, self.runs.fetch_add(1, Ordering::Relaxed));
        let to_url = renamed(&self.to, &suffix)?;
        let from_url = renamed(&self.from, &suffix)?;
        let from: TransportConfig = from_url.parse()?;
        let options = self.client();
        let consumer = connect_consumer(&from, &options)
            .with_context(|| format!("reading results from {from}"))?;
        // A results listener on port 0 is where the copies are told to connect.
        let out_url = consumer
            .bound()
            .map_or(from_url, |addr| format!("tcp://{addr}"));
        let receiver = Receiver::with_live(
            ReceiverConfig {
                framing: ReceiveFraming::Plumbline,
                max_frame: options.max_payload,
                print: false,
                throttle: None,
                track_results: false,
                continuity: false,
                max_connections: usize::MAX,
                intake: None,
                clock_offset_ns: 0,
            },
            live.clone(),
        );
        let reading_done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                let mut source =
                    FrameSource::new(consumer, || reading_done.load(Ordering::Relaxed));
                receiver.serve(&mut source, &from.to_string());
            });
            let urls = (to_url.as_str(), out_url.as_str(), suffix.as_str());
            let figures = self.drive(load, urls, &receiver, live, stop);
            receiver.stop();
            reading_done.store(true, Ordering::Relaxed);
            let _ = reader.join();
            figures
        })
    }
}

impl External {
    /// Starts the copies, sends the load (resizing the group on the schedule, if any), waits
    /// for the results, stops the copies.
    fn drive(
        &self,
        load: &Load,
        (to_url, out_url, run): (&str, &str, &str),
        receiver: &Receiver,
        live: &Live,
        stop: &Shutdown,
    ) -> Result<RunFigures> {
        let members = Members::start(self.workers, GRACE, |index, workers| {
            let copy = Copy {
                index,
                workers,
                input: to_url,
                output: out_url,
                run,
            };
            let what = format!("copy {index} of `{}`", self.spawn.shown());
            Proc::spawn(self.spawn.command(&copy), what)
        })?;
        if let Some(marker) = &self.spawn.ready {
            members.each(|copy| copy.wait_for(marker).map(drop))?;
        }
        let to: TransportConfig = to_url.parse()?;
        let options = self.client();
        let producer =
            connect_producer(&to, &options).with_context(|| format!("sending to {to}"))?;
        let mut publisher = FramePublisher::new(producer, options.max_payload);
        let plan = load.send_plan();
        // Stops the sender and the wait when the user does or a copy dies.
        let halt = Shutdown::new();
        let watching = AtomicBool::new(true);
        let start = Instant::now();
        let mut scaler = self.elastic.as_ref().map(Elastic::scaler);
        let leave = self.elastic.as_ref().map_or(Leave::Graceful, |e| e.leave);
        let (sent, death) = std::thread::scope(|scope| {
            let watcher = scope.spawn(|| {
                members.watch(
                    scaler.as_mut(),
                    leave,
                    (live, start),
                    (stop, &halt, &watching),
                )
            });
            let sent = send_and_wait(&plan, &mut publisher, receiver, &halt, live);
            watching.store(false, Ordering::Relaxed);
            (sent, watcher.join().expect("the watcher does not panic"))
        });
        if let (Some(elastic), Some(scaler)) = (&self.elastic, &scaler) {
            elastic.ran(members.changes(), scaler);
        }
        if let Some(dead) = death {
            bail!("{dead}");
        }
        let sent = sent?;
        // One that died after the watcher stopped looking still died mid-run.
        if let Some(dead) = members.first_dead() {
            bail!("{dead}");
        }
        members.stop_all()?;
        let wall = receiver
            .last_arrival()
            .map_or(Duration::ZERO, |last| last.saturating_duration_since(start));
        Ok(RunFigures::received(
            wall,
            sent,
            receiver.summary(Some(sent)),
            stop.requested(),
        ))
    }
}

/// Sends the plan, waits for the broker's acks and then for every result (or [`GIVE_UP`]
/// without one); returns how many were sent.
fn send_and_wait(
    plan: &SendPlan,
    publisher: &mut FramePublisher,
    receiver: &Receiver,
    halt: &Shutdown,
    live: &Live,
) -> Result<u64> {
    let (tally, errors) = sender::send(plan, vec![&mut *publisher], halt, live);
    if let Some(error) = errors.into_iter().next() {
        bail!("sending the load: {error}");
    }
    publisher
        .finish(FINISH)
        .context("the load's broker did not take it all")?;
    while receiver.messages() < tally.sent && !halt.requested() {
        if receiver.idle() > GIVE_UP {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(tally.sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spawn_command_is_split_like_a_shell_and_each_copy_gets_its_index_and_urls() {
        let spawn =
            Spawn::parse("python3 'my app.py' --id w{index}/{workers}-{run} --in {in} {out}")
                .unwrap();
        let argv = spawn.argv(&Copy {
            index: 2,
            workers: 4,
            input: "redis://h:1/in-x",
            output: "tcp://127.0.0.1:9",
            run: "x",
        });
        assert_eq!(
            argv,
            [
                "python3",
                "my app.py",
                "--id",
                "w2/4-x",
                "--in",
                "redis://h:1/in-x",
                "tcp://127.0.0.1:9"
            ]
        );
        assert_eq!(
            spawn.shown(),
            "python3 'my app.py' --id w{index}/{workers}-{run} --in {in} {out}"
        );
    }

    #[test]
    fn a_kafka_group_has_a_partition_per_member_and_a_group_of_each_runs_own() {
        let cluster = ClusterConfig {
            workers: 4,
            step: Step::Balanced,
            app: plumbline_worker::App::Count,
            partitions: 60,
            work: plumbline_worker::Work::Sleep,
            delay: Duration::from_millis(10),
            capacity: 64,
        };
        let group = External::group("kafka://h:9/jobs", &cluster, Path::new("plumbline"));
        let argv = group.spawn.argv(&Copy {
            index: 0,
            workers: 4,
            input: "kafka://h:9/jobs-t-3",
            output: "tcp://127.0.0.1:9",
            run: "t-3",
        });
        let after = |flag: &str| {
            let at = argv.iter().position(|w| w == flag).expect(flag);
            argv[at + 1].clone()
        };
        assert_eq!(after("--topic-partitions"), "4");
        assert_eq!(after("--group"), "plumbline-t-3");
        // The first member's line once the group assigned it, not a member still joining.
        assert_eq!(
            group.spawn.ready.as_deref(),
            Some("] assigned partitions [")
        );
    }

    #[test]
    fn a_spawn_command_with_open_quotes_or_no_words_is_refused() {
        assert!(
            format!("{:#}", Spawn::parse("python3 'app.py").unwrap_err())
                .contains("unbalanced quotes")
        );
        assert!(format!("{:#}", Spawn::parse("  ").unwrap_err()).contains("needs a command"));
    }

    #[test]
    fn each_run_renames_the_stream_subject_or_topic_and_keeps_login_and_query() {
        assert_eq!(
            renamed("redis://:pw@127.0.0.1:6379/in", "a1-0").unwrap(),
            "redis://:pw@127.0.0.1:6379/in-a1-0"
        );
        assert_eq!(
            renamed("nats://127.0.0.1:4222/jobs.eu?jetstream=1", "a1-3").unwrap(),
            "nats://127.0.0.1:4222/jobs.eu-a1-3?jetstream=1"
        );
        assert_eq!(
            renamed("kafka://h1:9092,h2:9092/nonces", "b-1").unwrap(),
            "kafka://h1:9092,h2:9092/nonces-b-1"
        );
        assert_eq!(
            renamed("tcp://127.0.0.1:0", "a1-0").unwrap(),
            "tcp://127.0.0.1:0",
            "a listener has no backlog to leave behind"
        );
        assert!(renamed("redis://127.0.0.1:6379", "x").is_err());
    }

    #[test]
    fn a_members_password_is_in_its_environment_not_its_argv() {
        let url = "redis://:s3cret@127.0.0.1:6379/jobs";
        let cluster = ClusterConfig {
            workers: 1,
            step: Step::Balanced,
            app: plumbline_worker::App::Count,
            partitions: 1,
            work: plumbline_worker::Work::Sleep,
            delay: Duration::from_millis(1),
            capacity: 4,
        };
        let group = External::group(url, &cluster, Path::new("plumbline"));
        let input = renamed(url, "a-0").unwrap();
        let argv = group.spawn.argv(&Copy {
            index: 0,
            workers: 1,
            input: &input,
            output: "tcp://127.0.0.1:9",
            run: "a-0",
        });
        assert!(argv.iter().all(|w| !w.contains("s3cret")), "{argv:?}");
        assert!(argv
            .iter()
            .any(|w| w == "redis://:***@127.0.0.1:6379/jobs-a-0"));
        let at = argv.iter().position(|w| w == "--password").unwrap();
        assert_eq!(argv[at + 1], format!("env:{MEMBER_PASSWORD}"));
        assert_eq!(
            group.spawn.env,
            [(MEMBER_PASSWORD.to_string(), "s3cret".to_string())]
        );
        let open = External::group("redis://127.0.0.1:6379/jobs", &cluster, Path::new("p"));
        assert!(open.spawn.env.is_empty() && !open.spawn.words.contains(&"--password".into()));
    }

    #[test]
    fn no_two_engines_share_a_tag() {
        assert_ne!(fresh_tag(), fresh_tag());
    }
}
