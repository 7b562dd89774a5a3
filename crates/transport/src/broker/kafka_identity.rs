//! Which Kafka-protocol broker a `kafka://` URL reached, as far as the protocol lets a client
//! learn it, and the known limitation of the one found. The Kafka backend (kafka.rs) asks the
//! broker; this only names what it answered, for the reports of `send --to`, `receive --from`
//! and `worker --in`. Nothing here changes how messages are sent or fetched.
//!
//! The Kafka protocol carries no product name or version: ApiVersions answers API version
//! ranges only, and Metadata the cluster id and the brokers' node ids. tansu 0.6 shows
//! itself there by its defaults: cluster id `tansu_cluster` (its `--kafka-cluster-id`) and
//! node id 111 (fixed in its command line), so a tansu started with another cluster id is
//! still recognised by its node id.

use serde::Serialize;

/// tansu's default cluster id (`tansu broker --kafka-cluster-id`).
const TANSU_CLUSTER_ID: &str = "tansu_cluster";
/// The node id tansu 0.6 gives its one broker (not settable).
const TANSU_NODE_ID: i32 = 111;

/// What tansu 0.6.0 gets wrong, found by the conformance test "a consumer resumes from a
/// committed offset": its memory:// and s3:// storage (dynostore) answer a fetch from an
/// offset inside a stored batch with the next batch, so the rest of that batch is never
/// delivered. Fixed upstream after 0.6.0 (commit 87db6ea, "return the batch containing a
/// mid-batch fetch offset"); its sqlite:// and postgres:// engines read records, not
/// batches, and are not affected, but the tansu the tests install is built without them.
pub const TANSU_RESUME_LIMITATION: &str =
    "tansu 0.6.0 (memory:// or s3:// storage) answers a fetch from an offset inside a \
     stored batch with the next batch: a group member that resumes from a committed offset \
     skips the rest of that batch, which plumbline then counts as lost";

/// The broker a Kafka client reached, as Metadata describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BrokerIdentity {
    /// The product, when its metadata gives it away (`tansu`); `None`: unknown.
    pub product: Option<&'static str>,
    /// Always `None` today: the Kafka protocol carries no broker version.
    pub version: Option<String>,
    pub cluster_id: Option<String>,
    pub node_ids: Vec<i32>,
    /// A known way this broker loses or repeats messages, said in every report.
    pub known_limitation: Option<&'static str>,
}

impl BrokerIdentity {
    /// Recognises the product from the cluster id and the node ids Metadata returned.
    pub fn from_metadata(cluster_id: Option<String>, mut node_ids: Vec<i32>) -> Self {
        node_ids.sort_unstable();
        let tansu = cluster_id.as_deref() == Some(TANSU_CLUSTER_ID) || node_ids == [TANSU_NODE_ID];
        BrokerIdentity {
            product: tansu.then_some("tansu"),
            version: None,
            cluster_id,
            node_ids,
            known_limitation: tansu.then_some(TANSU_RESUME_LIMITATION),
        }
    }

    /// The report's lines: the product and version if known and what told them, then a
    /// `warning:` line for a known limitation.
    pub fn text(&self) -> String {
        let nodes: Vec<String> = self.node_ids.iter().map(ToString::to_string).collect();
        let mut out = format!(
            "kafka broker: {} (version {}; cluster id {}, node(s) {})\n",
            self.product.unwrap_or("not recognised from its metadata"),
            self.version
                .as_deref()
                .unwrap_or("unknown: the Kafka protocol does not carry it"),
            self.cluster_id
                .as_deref()
                .map_or_else(|| "none".to_string(), |id| format!("'{id}'")),
            if nodes.is_empty() {
                "none".to_string()
            } else {
                nodes.join(",")
            }
        );
        if let Some(limitation) = self.known_limitation {
            out += &format!("warning: {limitation}\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tansu_is_recognised_by_its_default_cluster_id_or_its_fixed_node_id() {
        let by_cluster = BrokerIdentity::from_metadata(Some("tansu_cluster".into()), vec![1]);
        let by_node = BrokerIdentity::from_metadata(Some("prod-east".into()), vec![111]);
        for identity in [&by_cluster, &by_node] {
            assert_eq!(identity.product, Some("tansu"));
            assert_eq!(identity.known_limitation, Some(TANSU_RESUME_LIMITATION));
            let warning = identity.text().lines().nth(1).unwrap().to_string();
            assert!(warning.starts_with("warning: tansu 0.6.0"), "{warning}");
        }
    }

    #[test]
    fn another_broker_is_named_unrecognised_with_no_warning_line() {
        let kafka =
            BrokerIdentity::from_metadata(Some("MkU3OEVBNTcwNTJENDM2Qk".into()), vec![3, 1, 2]);
        assert_eq!(kafka.product, None);
        assert_eq!(
            kafka.text(),
            "kafka broker: not recognised from its metadata (version unknown: the Kafka \
             protocol does not carry it; cluster id 'MkU3OEVBNTcwNTJENDM2Qk', node(s) 1,2,3)\n"
        );
    }

    #[test]
    fn a_cluster_of_several_nodes_one_of_them_111_is_not_taken_for_tansu() {
        let kafka = BrokerIdentity::from_metadata(None, vec![111, 112]);
        assert_eq!(kafka.product, None);
        assert!(kafka.text().contains("cluster id none, node(s) 111,112"));
    }

    #[test]
    fn the_first_report_line_names_tansu_and_says_its_version_is_not_carried() {
        let tansu = BrokerIdentity::from_metadata(Some("tansu_cluster".into()), vec![111]);
        assert_eq!(
            tansu.text().lines().next(),
            Some(
                "kafka broker: tansu (version unknown: the Kafka protocol does not carry it; \
                 cluster id 'tansu_cluster', node(s) 111)"
            )
        );
    }
}
