//! Key distributions for generated load: uniform over K keys, Zipf(s), or one hot key with a share.
//!
//! A distribution draws a key index in `0..K`; what the index becomes (a nonce selector, a
//! partition) is the workload's business. Always driven by a caller-seeded RNG, so runs repeat.

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use rand_distr::{Distribution, Zipf};

/// How keys are drawn, as typed on the command line: `uniform`, `zipf:S`, `hot:SHARE`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KeyDist {
    /// Every key equally likely.
    Uniform,
    /// Key of rank r (key r-1) drawn with probability ∝ 1/r^s.
    Zipf(f64),
    /// Key 0 drawn with probability `share`, the others uniformly with the rest.
    Hot(f64),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KeyError {
    #[error("'{0}' is not a key distribution: use uniform, zipf:S (S > 0, e.g. zipf:1.1) or hot:SHARE (0 ≤ SHARE ≤ 1, e.g. hot:0.9)")]
    Unknown(String),
    #[error("zipf exponent {0} must be a finite number greater than 0")]
    ZipfExponent(f64),
    #[error("hot-key share {0} must be between 0 and 1")]
    HotShare(f64),
    #[error("a key distribution needs at least one key, got {0}")]
    NoKeys(u32),
}

impl FromStr for KeyDist {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        let unknown = || KeyError::Unknown(s.to_string());
        let (name, arg) = match s.split_once(':') {
            Some((name, arg)) => (name, Some(arg.parse::<f64>().map_err(|_| unknown())?)),
            None => (s, None),
        };
        let dist = match (name, arg) {
            ("uniform", None) => KeyDist::Uniform,
            ("zipf", Some(s)) => KeyDist::Zipf(s),
            ("hot", Some(share)) => KeyDist::Hot(share),
            _ => return Err(unknown()),
        };
        dist.validate()?;
        Ok(dist)
    }
}

impl fmt::Display for KeyDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyDist::Uniform => f.write_str("uniform"),
            KeyDist::Zipf(s) => write!(f, "zipf:{s}"),
            KeyDist::Hot(share) => write!(f, "hot:{share}"),
        }
    }
}

impl KeyDist {
    pub fn validate(&self) -> Result<(), KeyError> {
        match *self {
            KeyDist::Uniform => Ok(()),
            KeyDist::Zipf(s) if !(s.is_finite() && s > 0.0) => Err(KeyError::ZipfExponent(s)),
            KeyDist::Hot(share) if !(0.0..=1.0).contains(&share) => Err(KeyError::HotShare(share)),
            _ => Ok(()),
        }
    }

    /// A sampler over `keys` keys.
    pub fn sampler(&self, keys: u32) -> Result<KeySampler, KeyError> {
        self.validate()?;
        if keys == 0 {
            return Err(KeyError::NoKeys(keys));
        }
        Ok(match *self {
            KeyDist::Uniform => KeySampler::Uniform(keys),
            KeyDist::Zipf(s) => KeySampler::Zipf(
                Zipf::new(u64::from(keys), s).map_err(|_| KeyError::ZipfExponent(s))?,
            ),
            KeyDist::Hot(share) => KeySampler::Hot { keys, share },
        })
    }
}

/// A [`KeyDist`] bound to a key count, ready to draw.
#[derive(Clone, Copy, Debug)]
pub enum KeySampler {
    Uniform(u32),
    Zipf(Zipf<f64>),
    Hot { keys: u32, share: f64 },
}

impl KeySampler {
    /// Draws a key index in `0..keys`.
    pub fn sample(&self, rng: &mut impl Rng) -> u32 {
        match *self {
            KeySampler::Uniform(keys) => rng.gen_range(0..keys),
            // Zipf yields ranks 1..=keys as floats.
            KeySampler::Zipf(zipf) => zipf.sample(rng) as u32 - 1,
            KeySampler::Hot { keys, share } => {
                if keys == 1 || rng.gen_bool(share) {
                    0
                } else {
                    rng.gen_range(1..keys)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn histogram(dist: KeyDist, keys: u32, draws: usize) -> Vec<usize> {
        let sampler = dist.sampler(keys).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut counts = vec![0; keys as usize];
        for _ in 0..draws {
            counts[sampler.sample(&mut rng) as usize] += 1;
        }
        counts
    }

    #[test]
    fn parses_what_the_flag_documents() {
        assert_eq!("uniform".parse(), Ok(KeyDist::Uniform));
        assert_eq!("zipf:1.1".parse(), Ok(KeyDist::Zipf(1.1)));
        assert_eq!("hot:0.9".parse(), Ok(KeyDist::Hot(0.9)));
        assert_eq!("hot:1.5".parse::<KeyDist>(), Err(KeyError::HotShare(1.5)));
        assert_eq!(
            "zipf:0".parse::<KeyDist>(),
            Err(KeyError::ZipfExponent(0.0))
        );
        assert!(matches!(
            "pareto".parse::<KeyDist>(),
            Err(KeyError::Unknown(_))
        ));
        assert!(matches!(
            "zipf".parse::<KeyDist>(),
            Err(KeyError::Unknown(_))
        ));
        assert!(matches!(
            "hot:x".parse::<KeyDist>(),
            Err(KeyError::Unknown(_))
        ));
        for text in ["uniform", "zipf:1.1", "hot:0.9"] {
            assert_eq!(text.parse::<KeyDist>().unwrap().to_string(), text);
        }
    }

    #[test]
    fn uniform_spreads_evenly() {
        let counts = histogram(KeyDist::Uniform, 10, 100_000);
        assert!(
            counts.iter().all(|&c| (9_000..11_000).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn hot_key_takes_its_share() {
        let counts = histogram(KeyDist::Hot(0.9), 10, 100_000);
        assert!((88_000..92_000).contains(&counts[0]), "{counts:?}");
        assert!(counts[1..].iter().all(|&c| c > 0));
        assert_eq!(histogram(KeyDist::Hot(1.0), 10, 1000)[0], 1000);
    }

    #[test]
    fn zipf_favours_low_ranks_in_range() {
        let counts = histogram(KeyDist::Zipf(1.1), 60, 100_000);
        assert!(counts[0] > counts[1] && counts[1] > counts[5] && counts[5] > counts[50]);
        assert_eq!(counts.iter().sum::<usize>(), 100_000);
    }

    #[test]
    fn zero_keys_is_an_error() {
        assert_eq!(
            KeyDist::Uniform.sampler(0).unwrap_err(),
            KeyError::NoKeys(0)
        );
    }
}
