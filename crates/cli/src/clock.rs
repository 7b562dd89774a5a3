//! `plumbline clock --listen ADDR` (the run's clock reference) and `--clock-ref ADDR` on send
//! and receive: this host's clock offset from the reference, measured before a run, so
//! latency between hosts is measured on one clock (issue 17). The exchange itself is
//! `plumbline_transport::clock`; this file wires it to the commands and says what it found.

use anyhow::{Context, Result};
use plumbline_core::Shutdown;
use plumbline_measure::record::ClockSection;
use plumbline_measure::report::secs;
use plumbline_transport::clock;

use crate::args::ClockArgs;

/// Answers clock requests on `--listen` until Ctrl-C.
pub fn serve(args: &ClockArgs, shutdown: &Shutdown) -> Result<()> {
    let socket = std::net::UdpSocket::bind(&args.listen)
        .with_context(|| format!("--listen {}: binding a UDP socket", args.listen))?;
    crate::logs::result(format!("clock reference on {}", socket.local_addr()?));
    let answered = clock::serve(&socket, shutdown).context("serving clock requests")?;
    println!("answered {answered} clock request(s)");
    Ok(())
}

/// This host's offset from the reference at `addr`, said on stderr.
pub fn measure(addr: &str) -> Result<ClockSection> {
    let offset = clock::measure(addr).context("--clock-ref")?;
    let section = ClockSection {
        reference: addr.to_string(),
        offset_s: offset.offset_ns as f64 / 1e9,
        uncertainty_s: offset.uncertainty_ns as f64 / 1e9,
        samples: offset.samples,
    };
    tracing::info!(
        "clock: this host is {} {} the reference {addr} (± {}, best of {} exchanges); its times are moved onto the reference's",
        secs(section.offset_s.abs()),
        if section.offset_s >= 0.0 { "behind" } else { "ahead of" },
        secs(section.uncertainty_s),
        section.samples
    );
    Ok(section)
}

/// A latency whose clock correction is less sure than a tenth of its median is flagged.
const UNSURE: f64 = 0.1;

/// The warning for latency measured across hosts whose offset is not known well enough
/// against its p50; `None` when it is.
pub fn unsure(section: &ClockSection, p50_s: f64) -> Option<String> {
    (p50_s > 0.0 && section.uncertainty_s > UNSURE * p50_s).then(|| {
        format!(
            "the clock offset is known to ± {}, {:.0} % of the latency p50 {}: latency across hosts is that unsure",
            secs(section.uncertainty_s),
            100.0 * section.uncertainty_s / p50_s,
            secs(p50_s)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(uncertainty_s: f64) -> ClockSection {
        ClockSection {
            reference: "r".into(),
            offset_s: 0.005,
            uncertainty_s,
            samples: 32,
        }
    }

    #[test]
    fn an_uncertainty_beyond_a_tenth_of_the_median_is_flagged() {
        assert_eq!(unsure(&section(0.000_05), 0.001), None);
        let flagged = unsure(&section(0.000_5), 0.001).unwrap();
        assert!(flagged.contains("50 %"), "{flagged}");
        assert_eq!(
            unsure(&section(1.0), 0.0),
            None,
            "no latency, nothing to flag"
        );
    }
}
