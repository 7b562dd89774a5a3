//! Object stores for sending bulk data by reference (seed 004's "proxy" method, ProxyStore's
//! connectors): a producer puts the payload under a key and sends only the key; the consumer
//! gets it, and deletes it once done, so a run leaves no keys behind.
//!
//! * `redis://host:port` or `rediss://host:port` (TLS only) ([`RedisStore`]): `SET`/`GET`/`DEL`,
//!   one connection per store, with the client's `--password` and `--tls-ca`;
//! * `file://DIR` ([`FileStore`]): one file per key in a directory, for one host.
//!
//! Nothing here knows about streams or tasks.

use std::path::PathBuf;

use bytes::Bytes;

#[cfg(feature = "redis")]
use crate::broker::Login;
use crate::broker::{BrokerError, ClientOptions};

/// A key → bytes store shared by producers and consumers.
pub trait Store: Send {
    /// Stores `value` under `key`, replacing what was there.
    fn put(&mut self, key: &str, value: &[u8]) -> Result<(), BrokerError>;
    /// The value under `key`; `Err(Missing)` if there is none.
    fn get(&mut self, key: &str) -> Result<Bytes, BrokerError>;
    /// Removes `key` (no error if it was already gone).
    fn delete(&mut self, key: &str) -> Result<(), BrokerError>;
    /// How many keys start with `prefix`: what a run left behind.
    fn count(&mut self, prefix: &str) -> Result<u64, BrokerError>;
}

/// Opens the store a `redis://host:port`, `rediss://host:port` (TLS only) or `file://DIR`
/// URL names. A Redis store presents `options`' password and checks its certificate against
/// `options`' CA, as a broker client does; its URL holds no secret.
pub fn open_store(url: &str, options: &ClientOptions) -> Result<Box<dyn Store>, BrokerError> {
    if let Some(dir) = url.strip_prefix("file://") {
        return Ok(Box::new(FileStore::open(dir)?));
    }
    let tls = url.starts_with("rediss://");
    if let Some(_addr) = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"))
    {
        #[cfg(feature = "redis")]
        return Ok(Box::new(RedisStore::connect(
            _addr.trim_end_matches('/'),
            &crate::config::Access {
                tls,
                ..Default::default()
            },
            options,
            url,
        )?));
        #[cfg(not(feature = "redis"))]
        return Err(BrokerError::NotBuilt {
            backend: "Redis",
            feature: "redis",
        });
    }
    let _ = (options, tls);
    Err(BrokerError::Backend(format!(
        "'{url}' is not a store: use redis://host:port, rediss://host:port or file://DIR"
    )))
}

/// One file per key under a directory.
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    pub fn open(dir: &str) -> Result<Self, BrokerError> {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| BrokerError::Backend(format!("store folder {}: {e}", dir.display())))?;
        Ok(Self { dir })
    }

    fn path(&self, key: &str) -> Result<PathBuf, BrokerError> {
        // Keys become file names: nothing that could leave the folder.
        if key.is_empty() || key.contains(['/', '\\']) || key.starts_with('.') {
            return Err(BrokerError::Backend(format!("'{key}' is not a store key")));
        }
        Ok(self.dir.join(key))
    }

    fn failed(&self, key: &str, e: std::io::Error) -> BrokerError {
        BrokerError::Backend(format!("store {}: {key}: {e}", self.dir.display()))
    }
}

impl Store for FileStore {
    fn put(&mut self, key: &str, value: &[u8]) -> Result<(), BrokerError> {
        let path = self.path(key)?;
        // Written aside and renamed, so a reader never sees half a value.
        let part = self.dir.join(format!(".{key}.part"));
        std::fs::write(&part, value)
            .and_then(|()| std::fs::rename(&part, &path))
            .map_err(|e| self.failed(key, e))
    }

    fn get(&mut self, key: &str) -> Result<Bytes, BrokerError> {
        match std::fs::read(self.path(key)?) {
            Ok(bytes) => Ok(Bytes::from(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(BrokerError::Missing {
                what: "store key",
                name: key.to_string(),
            }),
            Err(e) => Err(self.failed(key, e)),
        }
    }

    fn delete(&mut self, key: &str) -> Result<(), BrokerError> {
        match std::fs::remove_file(self.path(key)?) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(self.failed(key, e)),
            _ => Ok(()),
        }
    }

    fn count(&mut self, prefix: &str) -> Result<u64, BrokerError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| self.failed(prefix, e))?;
        Ok(entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
            .count() as u64)
    }
}

/// `SET`/`GET`/`DEL` on a Redis server.
#[cfg(feature = "redis")]
pub struct RedisStore {
    addr: String,
    con: redis::Connection,
}

#[cfg(feature = "redis")]
impl RedisStore {
    fn connect(
        addr: &str,
        access: &crate::config::Access,
        options: &ClientOptions,
        url: &str,
    ) -> Result<Self, BrokerError> {
        let login = Login::new(access, options, &url)?;
        Ok(Self {
            addr: addr.to_string(),
            con: crate::broker::redis_connect(addr, login, options.connect_timeout)?,
        })
    }

    fn failed(&self, e: redis::RedisError) -> BrokerError {
        BrokerError::Backend(format!("redis store {}: {e}", self.addr))
    }
}

#[cfg(feature = "redis")]
impl Store for RedisStore {
    fn put(&mut self, key: &str, value: &[u8]) -> Result<(), BrokerError> {
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query::<()>(&mut self.con)
            .map_err(|e| self.failed(e))
    }

    fn get(&mut self, key: &str) -> Result<Bytes, BrokerError> {
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(key)
            .query(&mut self.con)
            .map_err(|e| self.failed(e))?;
        value.map(Bytes::from).ok_or_else(|| BrokerError::Missing {
            what: "store key",
            name: key.to_string(),
        })
    }

    fn delete(&mut self, key: &str) -> Result<(), BrokerError> {
        redis::cmd("DEL")
            .arg(key)
            .query::<()>(&mut self.con)
            .map_err(|e| self.failed(e))
    }

    fn count(&mut self, prefix: &str) -> Result<u64, BrokerError> {
        let mut cursor = 0u64;
        let mut n = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(1000)
                .query(&mut self.con)
                .map_err(|e| self.failed(e))?;
            n += keys.len() as u64;
            if next == 0 {
                return Ok(n);
            }
            cursor = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_store_puts_gets_deletes_and_counts_by_prefix() {
        let dir = std::env::temp_dir().join(format!("plumbline-store-{}", std::process::id()));
        let mut store = open_store(
            &format!("file://{}", dir.display()),
            &ClientOptions::default(),
        )
        .unwrap();
        store.put("run1-a", b"hello").unwrap();
        store.put("run1-b", b"world").unwrap();
        assert_eq!(&store.get("run1-a").unwrap()[..], b"hello");
        assert_eq!(store.count("run1-").unwrap(), 2);
        store.delete("run1-a").unwrap();
        store.delete("run1-a").unwrap();
        assert!(matches!(
            store.get("run1-a"),
            Err(BrokerError::Missing { .. })
        ));
        assert!(store.put("../escape", b"x").is_err());
        store.delete("run1-b").unwrap();
        assert_eq!(store.count("run1-").unwrap(), 0);
        let _ = std::fs::remove_dir_all(dir);
    }
}
