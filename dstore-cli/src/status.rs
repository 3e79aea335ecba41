//! `dstore status`: what a node, or every member of a cluster, holds and is doing in the
//! background (repair, scrubbing, garbage collection), as text or as JSON for scripts.

use dstore_core::{Node, Stats};
use serde::Serialize;

use crate::AnyResult;

#[derive(Serialize)]
pub struct Status {
    /// This node's id, when status was asked of a local root; `None` for a cluster client.
    node: Option<String>,
    /// The live members, as the members this client reached see them.
    members: Vec<Member>,
    /// Live keys (of the whole cluster, for a client).
    keys: usize,
    /// This node's own figures, for a local root.
    stats: Option<Stats>,
    /// Every live member's figures; `stats` is `None` for a member that did not answer.
    nodes: Vec<MemberStatus>,
}

#[derive(Serialize)]
struct Member {
    id: String,
    addr: String,
    zone: Option<String>,
}

#[derive(Serialize)]
struct MemberStatus {
    id: String,
    addr: String,
    zone: Option<String>,
    stats: Option<Stats>,
}

pub async fn gather(node: &Node, local: bool) -> AnyResult<Status> {
    let members = node
        .peers()
        .into_iter()
        .map(|p| Member {
            id: p.id.to_hex(),
            addr: p.addr,
            zone: p.zone,
        })
        .collect();
    let nodes = node
        .member_stats()
        .await
        .into_iter()
        .map(|(p, stats)| MemberStatus {
            id: p.id.to_hex(),
            addr: p.addr,
            zone: p.zone,
            stats,
        })
        .collect();
    Ok(Status {
        node: local.then(|| node.id().to_hex()),
        members,
        keys: node.keys("").await?.len(),
        stats: if local { Some(node.stats()?) } else { None },
        nodes,
    })
}

impl Status {
    pub fn print(&self) {
        if let Some(id) = &self.node {
            println!("node     {id}");
        }
        if let Some(s) = &self.stats {
            println!("chunks   {}", s.chunks);
        }
        println!("keys     {}", self.keys);
        if self.node.is_none() {
            println!("members  {}", self.members.len());
        }
        for m in &self.nodes {
            let zone = m.zone.as_deref().map(|z| format!(" zone {z}"));
            print!("  {} {}{}", m.id, m.addr, zone.unwrap_or_default());
            match &m.stats {
                None => println!("  (no answer)"),
                Some(s) => {
                    println!("  {} keys, {} chunks", s.keys, s.chunks);
                    let r = &s.repair;
                    println!(
                        "    repair  {} passes{}, last {} ms; sent {} chunks, {} manifests, {} bytes; \
                         handed off {}; read repairs {}; shards rebuilt {} ({} bytes read)",
                        r.passes,
                        if r.running { " (running)" } else { "" },
                        r.last_pass_ms,
                        r.chunks_pushed,
                        r.manifests_pushed,
                        r.bytes_pushed,
                        r.handed_off,
                        r.read_repairs,
                        r.shards_rebuilt,
                        r.rebuild_bytes_read
                    );
                    let c = &s.scrub;
                    println!(
                        "    scrub   {} passes, {} objects, {} bytes; {} bad, {} restored",
                        c.passes, c.objects, c.bytes, c.bad, c.restored
                    );
                    println!(
                        "    gc      {} chunks, {} tombstones collected",
                        s.gc.chunks_collected, s.gc.tombstones_collected
                    );
                    let d = &s.drain;
                    if d.running || d.objects > 0 {
                        println!(
                            "    handoff {}{} of {} objects checked, {} sent ({} bytes), {} unconfirmed",
                            if d.running { "(running) " } else { "" },
                            d.checked,
                            d.objects,
                            d.pushed,
                            d.bytes,
                            d.unconfirmed
                        );
                    }
                }
            }
        }
    }
}
