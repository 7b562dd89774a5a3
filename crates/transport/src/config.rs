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

use std::fmt;
use std::str::FromStr;

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
    },
    Nats {
        addr: String,
        subject: String,
        jetstream: bool,
    },
    Kafka {
        /// Comma-separated `host:port` list.
        bootstrap: String,
        topic: String,
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

/// A URL's parts after the scheme: (address, name, query pairs).
type Parts = (String, String, Vec<(String, String)>);

/// `host:port/name?k=v&…` → its [`Parts`].
fn split(url: &str, rest: &str, what: &'static str) -> Result<Parts, ConfigError> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (addr, name) = path.split_once('/').unwrap_or((path, ""));
    check_addr(url, addr)?;
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
    Ok((addr.to_string(), name.to_string(), pairs))
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

    fn from_str(url: &str) -> Result<Self, ConfigError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| ConfigError::Scheme(url.to_string()))?;
        match scheme {
            "tcp" => {
                check_addr(url, rest)?;
                Ok(TransportConfig::Tcp {
                    addr: rest.to_string(),
                })
            }
            "redis" => {
                let (addr, name, query) = split(url, rest, "stream or channel name")?;
                let mut mode = RedisMode::Streams;
                for (k, v) in query {
                    mode = match (k.as_str(), v.as_str()) {
                        ("mode", "streams") => RedisMode::Streams,
                        ("mode", "pubsub") => RedisMode::PubSub,
                        _ => return Err(bad_query(url, &k, &v, "mode=streams or mode=pubsub")),
                    };
                }
                Ok(TransportConfig::Redis { addr, name, mode })
            }
            "nats" => {
                let (addr, subject, query) = split(url, rest, "subject")?;
                let mut jetstream = false;
                for (k, v) in query {
                    jetstream = match (k.as_str(), v.as_str()) {
                        ("jetstream", "1" | "true") => true,
                        ("jetstream", "0" | "false") => false,
                        _ => return Err(bad_query(url, &k, &v, "jetstream=1 or jetstream=0")),
                    };
                }
                Ok(TransportConfig::Nats {
                    addr,
                    subject,
                    jetstream,
                })
            }
            "kafka" => {
                let (bootstrap, topic, query) = split(url, rest, "topic")?;
                if let Some((k, v)) = query.first() {
                    return Err(bad_query(url, k, v, "no query keys"));
                }
                Ok(TransportConfig::Kafka { bootstrap, topic })
            }
            _ => Err(ConfigError::Scheme(url.to_string())),
        }
    }
}

impl fmt::Display for TransportConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportConfig::Tcp { addr } => write!(f, "tcp://{addr}"),
            TransportConfig::Redis { addr, name, mode } => {
                let mode = match mode {
                    RedisMode::PubSub => "pubsub",
                    RedisMode::Streams => "streams",
                };
                write!(f, "redis://{addr}/{name}?mode={mode}")
            }
            TransportConfig::Nats {
                addr,
                subject,
                jetstream,
            } => {
                write!(f, "nats://{addr}/{subject}")?;
                if *jetstream {
                    f.write_str("?jetstream=1")?;
                }
                Ok(())
            }
            TransportConfig::Kafka { bootstrap, topic } => write!(f, "kafka://{bootstrap}/{topic}"),
        }
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
