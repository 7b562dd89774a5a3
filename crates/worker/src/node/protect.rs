//! Protected mode for the cluster's control plane (Redis's protected mode, in plumbline's
//! terms): which of an initializer's listeners may face the network without the run's token,
//! and how a presented token is judged.
//!
//! Pure functions, called before any listener is bound and wherever a peer presents a token
//! (a join, a shutdown request). Whether an address is loopback is the caller's to say, so
//! nothing here resolves names, binds or logs.

/// How a presented token is judged (constant time), shared with the HTTP server of `/metrics`.
pub use plumbline_core::secret::admits;

/// A listener that can steer or read the cluster: its flag, its address, and what anyone who
/// reaches it could do without a token.
#[derive(Clone, Copy, Debug)]
pub struct Guarded<'a> {
    pub flag: &'static str,
    pub addr: &'a str,
    pub exposes: &'static str,
}

/// The initializer's listeners that protected mode guards: the control port (joiners), the
/// external port (shutdown) and the metrics port. `--data` is not among them: a data
/// connection is only taken with the ticket a joiner got over the guarded control port.
pub fn control_plane<'a>(
    control: &'a str,
    external: Option<&'a str>,
    metrics: Option<&'a str>,
) -> Vec<Guarded<'a>> {
    let mut guarded = vec![Guarded {
        flag: "--control",
        addr: control,
        exposes: "anyone who reaches it could join the cluster and receive its items",
    }];
    guarded.extend(external.map(|addr| Guarded {
        flag: "--external",
        addr,
        exposes: "anyone who reaches it could shut the cluster down",
    }));
    guarded.extend(metrics.map(|addr| Guarded {
        flag: "--metrics",
        addr,
        exposes: "anyone who reaches it could read the cluster's metrics",
    }));
    guarded
}

/// Refuses a start where a guarded listener is beyond loopback and no token was given. The
/// error names every such flag and address, what it would expose, and the two ways out.
pub fn require_token(
    listeners: &[Guarded<'_>],
    has_token: bool,
    is_loopback: impl Fn(&str) -> bool,
) -> Result<(), String> {
    if has_token {
        return Ok(());
    }
    let open: Vec<String> = listeners
        .iter()
        .filter(|l| !is_loopback(l.addr))
        .map(|l| {
            format!(
                "{} {} is not a loopback address: give --token file:PATH|env:VAR ({}), or bind \
                 it to 127.0.0.1",
                l.flag, l.addr, l.exposes
            )
        })
        .collect();
    if open.is_empty() {
        Ok(())
    } else {
        Err(format!("protected mode: {}", open.join(";\n  ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listeners<'a>(control: &'a str, metrics: &'a str) -> [Guarded<'a>; 2] {
        [
            Guarded {
                flag: "--control",
                addr: control,
                exposes: "anyone could join",
            },
            Guarded {
                flag: "--metrics",
                addr: metrics,
                exposes: "anyone could read",
            },
        ]
    }

    fn loopback(addr: &str) -> bool {
        addr.starts_with("127.")
    }

    #[test]
    fn loopback_listeners_need_no_token() {
        let all = listeners("127.0.0.1:6000", "127.0.0.1:5001");
        assert_eq!(require_token(&all, false, loopback), Ok(()));
    }

    #[test]
    fn a_listener_beyond_loopback_without_a_token_is_refused_naming_flag_address_and_fix() {
        let all = listeners("127.0.0.1:6000", "0.0.0.0:5001");
        let err = require_token(&all, false, loopback).unwrap_err();
        assert!(err.starts_with("protected mode: --metrics 0.0.0.0:5001 is not a loopback address: give --token file:PATH|env:VAR (anyone could read), or bind it to 127.0.0.1"), "{err}");
        assert!(!err.contains("--control"), "{err}");
    }

    #[test]
    fn every_exposed_listener_is_named() {
        let all = listeners("0.0.0.0:6000", "10.0.0.2:5001");
        let err = require_token(&all, false, loopback).unwrap_err();
        assert!(
            err.contains("--control 0.0.0.0:6000") && err.contains(";\n  --metrics 10.0.0.2:5001"),
            "{err}"
        );
    }

    #[test]
    fn a_token_lets_any_listener_face_the_network() {
        let all = listeners("0.0.0.0:6000", "0.0.0.0:5001");
        assert_eq!(require_token(&all, true, loopback), Ok(()));
    }

    #[test]
    fn the_control_plane_is_control_external_and_metrics_when_given() {
        let flags = |g: Vec<Guarded<'_>>| g.iter().map(|g| g.flag).collect::<Vec<_>>();
        assert_eq!(flags(control_plane("c", None, None)), ["--control"]);
        assert_eq!(
            flags(control_plane("c", Some("e"), Some("m"))),
            ["--control", "--external", "--metrics"]
        );
    }
}
