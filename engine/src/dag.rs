//! The stage graph: ordering, cycle reporting and rendering.

use indexmap::IndexMap;
use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};

use crate::pipeline::PlannedStage;

fn build(stages: &IndexMap<String, PlannedStage>) -> (DiGraph<&str, ()>, Vec<NodeIndex>) {
    let mut g = DiGraph::new();
    let idx: Vec<NodeIndex> = stages.keys().map(|k| g.add_node(k.as_str())).collect();
    for (i, s) in stages.values().enumerate() {
        for dep in &s.deps {
            if let Some(j) = stages.get_index_of(dep) {
                g.add_edge(idx[j], idx[i], ());
            }
        }
    }
    (g, idx)
}

/// Stage names in an order where every stage follows its dependencies (declaration
/// order among independent stages), or the stages of one cycle, first repeated last.
pub fn topo_order(stages: &IndexMap<String, PlannedStage>) -> Result<Vec<String>, Vec<String>> {
    let (g, _) = build(stages);
    match toposort(&g, None) {
        Ok(order) => {
            // toposort's order among independent nodes is arbitrary; keep the file's order.
            let mut done = vec![false; stages.len()];
            let mut out = Vec::with_capacity(stages.len());
            while out.len() < stages.len() {
                for (i, s) in stages.values().enumerate() {
                    if !done[i]
                        && s.deps
                            .iter()
                            .all(|d| stages.get_index_of(d).is_none_or(|j| done[j]))
                    {
                        done[i] = true;
                        out.push(s.name.clone());
                    }
                }
            }
            debug_assert_eq!(order.len(), out.len());
            Ok(out)
        }
        Err(_) => Err(find_cycle(&g)),
    }
}

fn find_cycle(g: &DiGraph<&str, ()>) -> Vec<String> {
    let scc = tarjan_scc(g)
        .into_iter()
        .find(|c| c.len() > 1 || g.contains_edge(c[0], c[0]))
        .unwrap_or_default();
    // Walk inside the component until a node repeats.
    let mut path = vec![scc[0]];
    loop {
        let last = *path.last().unwrap();
        let next = g
            .neighbors(last)
            .find(|n| scc.contains(n))
            .expect("every node of a strongly connected component has a successor in it");
        if let Some(pos) = path.iter().position(|&n| n == next) {
            let mut cycle: Vec<String> = path[pos..].iter().map(|&n| g[n].to_string()).collect();
            cycle.push(g[next].to_string());
            return cycle;
        }
        path.push(next);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Mermaid,
    Dot,
}

/// A dependency between two stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub from: String,
    pub to: String,
    /// The artifacts passed along (`output→input`), or empty for `needs`.
    pub label: String,
}

pub fn edges(stages: &IndexMap<String, PlannedStage>) -> Vec<Edge> {
    let mut out = Vec::new();
    for s in stages.values() {
        for dep in &s.deps {
            let label: Vec<String> = s
                .inputs
                .iter()
                .flat_map(|(port, refs)| {
                    refs.iter()
                        .filter(|r| &r.stage == dep)
                        .map(move |r| format!("{}→{port}", r.output))
                })
                .collect();
            out.push(Edge {
                from: dep.clone(),
                to: s.name.clone(),
                label: label.join(", "),
            });
        }
    }
    out
}

pub fn render(stages: &IndexMap<String, PlannedStage>, format: Format) -> String {
    let mut out = String::new();
    match format {
        Format::Mermaid => {
            out.push_str("flowchart TD\n");
            for s in stages.values() {
                out.push_str(&format!(
                    "    {}[\"{}<br/><small>{}</small>\"]\n",
                    mermaid_id(&s.name),
                    s.name,
                    s.kind.name()
                ));
            }
            for Edge {
                from: a,
                to: b,
                label,
            } in edges(stages)
            {
                if label.is_empty() {
                    out.push_str(&format!("    {} -.-> {}\n", mermaid_id(&a), mermaid_id(&b)));
                } else {
                    out.push_str(&format!(
                        "    {} -->|\"{label}\"| {}\n",
                        mermaid_id(&a),
                        mermaid_id(&b)
                    ));
                }
            }
        }
        Format::Dot => {
            out.push_str("digraph pipeline {\n    rankdir=TB;\n    node [shape=box];\n");
            for s in stages.values() {
                out.push_str(&format!(
                    "    \"{}\" [label=\"{}\\n({})\"];\n",
                    s.name,
                    s.name,
                    s.kind.name()
                ));
            }
            for Edge {
                from: a,
                to: b,
                label,
            } in edges(stages)
            {
                if label.is_empty() {
                    out.push_str(&format!("    \"{a}\" -> \"{b}\" [style=dashed];\n"));
                } else {
                    out.push_str(&format!("    \"{a}\" -> \"{b}\" [label=\"{label}\"];\n"));
                }
            }
            out.push_str("}\n");
        }
    }
    out
}

fn mermaid_id(name: &str) -> String {
    format!("s_{}", name.replace('-', "_"))
}
