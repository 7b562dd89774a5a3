//! `TransportConfig`: the closed set of data planes, parsed from the URL a flag takes.
//!
//! ```text
//! tcp://host:port                          plumbline's length-prefixed frames
//! redis://host:port/name?mode=streams      a Redis stream with consumer groups (the default mode)
//! redis://host:port/name?mode=pubsub       a Redis pub/sub channel
//! nats://host:port/subject                 NATS core; consumers share work in a queue group
//! nats://host:port/subject?jetstream=1     a JetStream work-queue stream with explicit acks
//! kafka://host:port[,host:port…]/topic     a Kafka topic (any Kafka-protocol broker)
//! ```
//!
//! This is data only: what each backend promises ([`Guarantee`]) and where it is. Connecting is
//! each backend's module. A URL with an unknown scheme, a missing name, a bad port or a query
//! key the backend does not take is refused with the value named.
//!
//! Any broker URL may carry `user:password@` before its address (percent-encoded) and ask for
//! TLS: `rediss://`, or `?tls=1` on `redis://`, `nats://` and `kafka://`; Kafka takes
//! `?sasl=PLAIN|SCRAM-SHA-256|SCRAM-SHA-512` for SASL. These are [`Access`]. A password never
//! shows: [`TransportConfig`]'s `Display` and `Debug` and every [`ConfigError`] print `***`
//! for it (the `--password` flag, read from a file or variable, is the way to keep it out of
//! argv as well).

use std::fmt;
use std::str::FromStr;

use percent_encoding::percent_decode_str;
use plumbline_core::secret::{redact_url, Secret, REDACTED};

/// What a backend promises about delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guarantee {
    /// A message may be lost (a slow or disconnected consumer misses it), never repeated.
    AtMostOnce,
    /// A message unacknowledged when its consumer dies is delivered again: none lost, some
    /// possibly twice.
    AtLeastOnce,
}

impl fmt::Display for Guarantee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Guarantee::AtMostOnce => "at-most-once",
            Guarantee::AtLeastOnce => "at-least-once",
        })
    }
}

/// How a Redis URL uses Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisMode {
    PubSub,
    Streams,
}

/// Kafka's SASL mechanisms plumbline passes through to librdkafka.
pub const SASL_MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// Who plumbline is to a broker and how it talks to it, from the URL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    pub user: Option<String>,
    /// The URL's password; a `--password` given to the client takes its place.
    pub password: Option<Secret>,
    /// TLS only, verified against the system's roots or the client's CA file: never plaintext.
    pub tls: bool,
    /// Kafka: the SASL mechanism (one of [`SASL_MECHANISMS`]).
    pub sasl: Option<String>,
}

impl Access {
    /// `user:***@`, `user@` or nothing: the URL's userinfo as it may be shown.
    fn shown(&self) -> String {
        match (&self.user, &self.password) {
            (user, Some(_)) => format!("{}:{REDACTED}@", user.as_deref().unwrap_or("")),
            (Some(user), None) => format!("{user}@"),
            (None, None) => String::new(),
        }
    }
}

/// One data plane, as a flag names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransportConfig {
    Tcp {
        addr: String,
    },
    Redis {
        addr: String,
        name: String,
        mode: RedisMode,
        access: Access,
    },
    Nats {
        addr: String,
        subject: String,
        jetstream: bool,
        access: Access,
    },
    Kafka {
        /// Comma-separated `host:port` list.
        bootstrap: String,
        topic: String,
        access: Access,
    },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("'{0}' is not a transport URL: use tcp://host:port, redis://host:port/name, nats://host:port/subject or kafka://host:port/topic")]
    Scheme(String),
    #[error("'{url}': '{addr}' is not host:port")]
    Address { url: String, addr: String },
    #[error("'{url}' names no {what} after the address (…/{what})")]
    MissingName { url: String, what: &'static str },
    #[error("'{url}': query '{key}={value}' is not understood here ({allowed})")]
    Query {
        url: String,
        key: String,
        value: String,
        allowed: &'static str,
    },
}

impl TransportConfig {
    pub fn guarantee(&self) -> Guarantee {
        match self {
            TransportConfig::Redis {
                mode: RedisMode::PubSub,
                ..
            }
            | TransportConfig::Nats {
                jetstream: false, ..
            } => Guarantee::AtMostOnce,
            // TCP: a connection delivers in order or fails loudly; a lost peer is reported by
            // sequence numbers, never retried.
            TransportConfig::Tcp { .. } => Guarantee::AtMostOnce,
            _ => Guarantee::AtLeastOnce,
        }
    }

    /// The backend's name for reports: "redis streams", "nats jetstream", …
    pub fn kind(&self) -> &'static str {
        match self {
            TransportConfig::Tcp { .. } => "tcp",
            TransportConfig::Redis {
                mode: RedisMode::PubSub,
                ..
            } => "redis pub/sub",
            TransportConfig::Redis { .. } => "redis streams",
            TransportConfig::Nats {
                jetstream: true, ..
            } => "nats jetstream",
            TransportConfig::Nats { .. } => "nats core",
            TransportConfig::Kafka { .. } => "kafka",
        }
    }

    /// Whether the backend acknowledges what a producer hands it (a Redis reply, a JetStream
    /// or Kafka ack); tcp and NATS core only write.
    pub fn has_acks(&self) -> bool {
        !matches!(
            self,
            TransportConfig::Tcp { .. }
                | TransportConfig::Nats {
                    jetstream: false,
                    ..
                }
        )
    }

    /// The URL's credentials and TLS; `None` for tcp.
    pub fn access(&self) -> Option<&Access> {
        match self {
            TransportConfig::Tcp { .. } => None,
            TransportConfig::Redis { access, .. }
            | TransportConfig::Nats { access, .. }
            | TransportConfig::Kafka { access, .. } => Some(access),
        }
    }
}

fn check_addr(url: &str, addr: &str) -> Result<(), ConfigError> {
    let ok = addr.split(',').all(|one| {
        one.rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
    });
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Address {
            url: url.to_string(),
            addr: addr.to_string(),
        })
    }
}

/// A URL's parts after the scheme: (address, name, query pairs, userinfo).
type Parts = (String, String, Vec<(String, String)>, Access);

/// `[user[:password]@]host:port/name?k=v&…` → its [`Parts`]; `url` is the URL as shown.
fn split(url: &str, rest: &str, what: &'static str) -> Result<Parts, ConfigError> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, name) = path.split_once('/').unwrap_or((path, ""));
    let (userinfo, addr) = match authority.rsplit_once('@') {
        Some((userinfo, addr)) => (Some(userinfo), addr),
        None => (None, authority),
    };
    check_addr(url, addr)?;
    let decode = |part: &str| percent_decode_str(part).decode_utf8_lossy().into_owned();
    let access = match userinfo {
        None => Access::default(),
        Some(info) => {
            let (user, password) = match info.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (info, None),
            };
            Access {
                user: (!user.is_empty()).then(|| decode(user)),
                password: password
                    .filter(|p| !p.is_empty())
                    .map(|p| Secret::new(decode(p))),
                ..Access::default()
            }
        }
    };
    if name.is_empty() {
        return Err(ConfigError::MissingName {
            url: url.to_string(),
            what,
        });
    }
    let pairs = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    Ok((addr.to_string(), name.to_string(), pairs, access))
}

fn bad_query(url: &str, key: &str, value: &str, allowed: &'static str) -> ConfigError {
    ConfigError::Query {
        url: url.to_string(),
        key: key.to_string(),
        value: value.to_string(),
        allowed,
    }
}

impl FromStr for TransportConfig {
    type Err = ConfigError;

    fn from_str(typed: &str) -> Result<Self, ConfigError> {
        // Errors quote the URL as typed, less its password.
        let shown = redact_url(typed);
        let url = shown.as_str();
        let (scheme, rest) = typed
            .split_once("://")
            .ok_or_else(|| ConfigError::Scheme(url.to_string()))?;
        match scheme {
            "tcp" => {
                check_addr(url, rest)?;
                Ok(TransportConfig::Tcp {
                    addr: rest.to_string(),
                })
            }
            "redis" | "rediss" => {
                let (addr, name, query, mut access) = split(url, rest, "stream or channel name")?;
                access.tls = scheme == "rediss";
                let mut mode = RedisMode::Streams;
                for (k, v) in query {
                    match (k.as_str(), v.as_str()) {
                        ("mode", "streams") => mode = RedisMode::Streams,
                        ("mode", "pubsub") => mode = RedisMode::PubSub,
                        ("tls", v) if tls_flag(v).is_some() => {
                            access.tls |= tls_flag(v) == Some(true)
                        }
                        _ => {
                            return Err(bad_query(
                                url,
                                &k,
                                &v,
                                "mode=streams, mode=pubsub or tls=1",
                            ))
                        }
                    };
                }
                Ok(TransportConfig::Redis {
                    addr,
                    name,
                    mode,
                    access,
                })
            }
            "nats" => {
                let (addr, subject, query, mut access) = split(url, rest, "subject")?;
                let mut jetstream = false;
                for (k, v) in query {
                    match (k.as_str(), tls_flag(&v)) {
                        ("jetstream", Some(on)) => jetstream = on,
                        ("tls", Some(on)) => access.tls = on,
                        _ => return Err(bad_query(url, &k, &v, "jetstream=1|0 or tls=1|0")),
                    };
                }
                Ok(TransportConfig::Nats {
                    addr,
                    subject,
                    jetstream,
                    access,
                })
            }
            "kafka" => {
                let (bootstrap, topic, query, mut access) = split(url, rest, "topic")?;
                for (k, v) in query {
                    match (k.as_str(), tls_flag(&v)) {
                        ("tls", Some(on)) => access.tls = on,
                        ("sasl", _) if SASL_MECHANISMS.contains(&v.as_str()) => {
                            access.sasl = Some(v)
                        }
                        _ => {
                            return Err(bad_query(
                                url,
                                &k,
                                &v,
                                "tls=1|0 or sasl=PLAIN|SCRAM-SHA-256|SCRAM-SHA-512",
                            ))
                        }
                    }
                }
                Ok(TransportConfig::Kafka {
                    bootstrap,
                    topic,
                    access,
                })
            }
            _ => Err(ConfigError::Scheme(url.to_string())),
        }
    }
}

/// `1`/`true` or `0`/`false`.
fn tls_flag(value: &str) -> Option<bool> {
    match value {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

impl fmt::Display for TransportConfig {
    /// The URL, with `***` for a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut query = Vec::new();
        match self {
            TransportConfig::Tcp { addr } => return write!(f, "tcp://{addr}"),
            TransportConfig::Redis {
                addr,
                name,
                mode,
                access,
            } => {
                let scheme = if access.tls { "rediss" } else { "redis" };
                let mode = match mode {
                    RedisMode::PubSub => "pubsub",
                    RedisMode::Streams => "streams",
                };
                write!(f, "{scheme}://{}{addr}/{name}?mode={mode}", access.shown())?;
                return Ok(());
            }
            TransportConfig::Nats {
                addr,
                subject,
                jetstream,
                access,
            } => {
                write!(f, "nats://{}{addr}/{subject}", access.shown())?;
                if *jetstream {
                    query.push("jetstream=1".to_string());
                }
                if access.tls {
                    query.push("tls=1".into());
                }
            }
            TransportConfig::Kafka {
                bootstrap,
                topic,
                access,
            } => {
                write!(f, "kafka://{}{bootstrap}/{topic}", access.shown())?;
                if access.tls {
                    query.push("tls=1".into());
                }
                if let Some(sasl) = &access.sasl {
                    query.push(format!("sasl={sasl}"));
                }
            }
        }
        if !query.is_empty() {
            write!(f, "?{}", query.join("&"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_backend_parses_and_prints_back() {
        for (url, kind, guarantee) in [
            ("tcp://127.0.0.1:7000", "tcp", Guarantee::AtMostOnce),
            (
                "redis://127.0.0.1:6379/jobs?mode=streams",
                "redis streams",
                Guarantee::AtLeastOnce,
            ),
            (
                "redis://127.0.0.1:6379/jobs?mode=pubsub",
                "redis pub/sub",
                Guarantee::AtMostOnce,
            ),
            (
                "nats://127.0.0.1:4222/jobs",
                "nats core",
                Guarantee::AtMostOnce,
            ),
            (
                "nats://127.0.0.1:4222/jobs?jetstream=1",
                "nats jetstream",
                Guarantee::AtLeastOnce,
            ),
            (
                "kafka://a:9092,b:9092/jobs",
                "kafka",
                Guarantee::AtLeastOnce,
            ),
        ] {
            let config: TransportConfig = url.parse().unwrap();
            assert_eq!(config.kind(), kind);
            assert_eq!(config.guarantee(), guarantee);
            assert_eq!(config.to_string(), url);
        }
        let default: TransportConfig = "redis://h:1/s".parse().unwrap();
        assert_eq!(default.kind(), "redis streams");
        for url in [
            "rediss://127.0.0.1:6379/jobs?mode=streams",
            "nats://me@127.0.0.1:4222/jobs?jetstream=1&tls=1",
            "kafka://me:***@a:9092/jobs?tls=1&sasl=SCRAM-SHA-256",
        ] {
            assert_eq!(url.parse::<TransportConfig>().unwrap().to_string(), url);
        }
    }

    #[test]
    fn credentials_and_tls_come_from_the_url() {
        let config: TransportConfig = "redis://bob:p%40ss%2Fw@h:1/s?tls=1".parse().unwrap();
        let access = config.access().unwrap();
        assert_eq!(access.user.as_deref(), Some("bob"));
        assert_eq!(access.password.as_ref().unwrap().expose(), "p@ss/w");
        assert!(access.tls, "?tls=1 on redis:// is rediss://");
        assert!(config.to_string().starts_with("rediss://bob:***@h:1/s"));

        let only_password: TransportConfig = "nats://:pw@h:1/s".parse().unwrap();
        let access = only_password.access().unwrap();
        assert_eq!(access.user, None);
        assert!(!access.tls);
        assert_eq!(access.password.as_ref().unwrap().expose(), "pw");

        let kafka: TransportConfig = "kafka://u@a:1,b:2/t?sasl=PLAIN&tls=1".parse().unwrap();
        let access = kafka.access().unwrap();
        assert_eq!((access.sasl.as_deref(), access.tls), (Some("PLAIN"), true));
        assert_eq!(
            "tcp://h:1".parse::<TransportConfig>().unwrap().access(),
            None
        );
    }

    #[test]
    fn a_password_never_shows() {
        let secret = "hunter2";
        let config: TransportConfig = format!("redis://:{secret}@h:1/s").parse().unwrap();
        assert!(!config.to_string().contains(secret), "{config}");
        assert!(!format!("{config:?}").contains(secret), "{config:?}");
        for bad in [
            format!("redis://:{secret}@h/s"),
            format!("nats://u:{secret}@h:1/s?jetstream=maybe"),
            format!("kafka://u:{secret}@h:1/t?sasl=GSSAPI"),
            format!("amqp://u:{secret}@h:1/q"),
        ] {
            let err = bad.parse::<TransportConfig>().unwrap_err().to_string();
            assert!(!err.contains(secret) && err.contains("***"), "{err}");
        }
    }

    #[test]
    fn bad_urls_are_named() {
        for (url, needle) in [
            ("amqp://h:1/q", "is not a transport URL"),
            ("redis://h/jobs", "'h' is not host:port"),
            ("redis://h:1", "names no stream or channel name"),
            ("nats://h:1/s?jetstream=maybe", "jetstream=maybe"),
            ("redis://h:1/s?mode=list", "mode=list"),
            ("kafka://h:99999/t", "not host:port"),
            ("kafka://h:1/t?acks=0", "acks=0"),
        ] {
            let err = url.parse::<TransportConfig>().unwrap_err().to_string();
            assert!(
                err.contains(needle) && err.contains(url.split('?').next().unwrap()),
                "{url}: {err}"
            );
        }
    }
}
