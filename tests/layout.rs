//! Layout properties on small and large graphs, limits, errors, determinism.

use batchgraph::pictures::layout::{
    layout, render_svg, Group, Layout, Limits, NodeStyle, Picture, PictureEdge, PictureError, PictureNode,
};

fn node(title: &str, style: NodeStyle) -> PictureNode {
    PictureNode {
        title: title.into(),
        detail: "[2, 4]".into(),
        style,
        group: None,
    }
}

fn edge(from: usize, to: usize) -> PictureEdge {
    PictureEdge { from, to, label: None }
}

fn picture(n: usize, edges: &[(usize, usize)]) -> Picture {
    Picture {
        nodes: (0..n).map(|i| node(&format!("n{i}"), NodeStyle::Op)).collect(),
        edges: edges.iter().map(|&(a, b)| edge(a, b)).collect(),
        groups: vec![],
    }
}

/// `t{i} = tanh(t{i-1}) + t{i-1}`, `layers` times: 2 * layers + 2 nodes.
fn skip_chain(layers: usize) -> Picture {
    let mut p = Picture::default();
    p.nodes.push(node("x", NodeStyle::Input));
    let mut t = 0;
    for _ in 0..layers {
        p.nodes.push(node("tanh", NodeStyle::Op));
        let h = p.nodes.len() - 1;
        p.edges.push(edge(t, h));
        p.nodes.push(node("+", NodeStyle::Op));
        let s = p.nodes.len() - 1;
        p.edges.push(edge(h, s));
        p.edges.push(edge(t, s));
        t = s;
    }
    p.nodes.push(node("out", NodeStyle::Output));
    p.edges.push(edge(t, p.nodes.len() - 1));
    p
}

/// A random DAG: node i > 0 uses `fan_in` earlier nodes (a fixed LCG).
fn random_dag(n: usize, fan_in: usize, seed: u64) -> Picture {
    let mut state = seed;
    let mut next = move |bound: usize| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) % bound as u64) as usize
    };
    let mut edges = Vec::new();
    for i in 1..n {
        for _ in 0..fan_in {
            edges.push((next(i), i));
        }
    }
    picture(n, &edges)
}

/// No overlaps within or across layers; every edge runs downward from the
/// bottom of its source to the top of its target.
fn check(p: &Picture, l: &Layout) {
    assert_eq!(l.nodes.len(), p.nodes.len());
    assert_eq!(l.edges.len(), p.edges.len());
    let mut by_layer: Vec<Vec<usize>> = vec![Vec::new(); l.layers];
    for (v, place) in l.nodes.iter().enumerate() {
        by_layer[place.layer].push(v);
        let r = place.rect;
        assert!(r.x >= 0.0 && r.right() <= l.width && r.y >= 0.0 && r.bottom() <= l.height);
    }
    for layer in &by_layer {
        let mut sorted = layer.clone();
        sorted.sort_by_key(|&v| l.nodes[v].position);
        for pair in sorted.windows(2) {
            let (a, b) = (l.nodes[pair[0]].rect, l.nodes[pair[1]].rect);
            assert!(a.right() + 1.0 <= b.x, "nodes {} and {} overlap", pair[0], pair[1]);
        }
    }
    for pair in by_layer.windows(2) {
        let bottom = pair[0].iter().map(|&v| l.nodes[v].rect.bottom()).fold(0.0, f64::max);
        let top = pair[1].iter().map(|&v| l.nodes[v].rect.y).fold(f64::INFINITY, f64::min);
        if !pair[0].is_empty() && !pair[1].is_empty() {
            assert!(bottom < top);
        }
    }
    for (e, (edge, route)) in p.edges.iter().zip(&l.edges).enumerate() {
        let (s, t) = (&l.nodes[edge.from], &l.nodes[edge.to]);
        assert!(s.layer < t.layer, "edge {e} does not go down");
        let first = route.curves.first().expect("a curve");
        let last = route.curves.last().expect("a curve");
        assert_eq!(first.from.y, s.rect.bottom());
        assert_eq!(last.to.y, t.rect.y);
        assert!(
            first.from.x >= s.rect.x && first.from.x <= s.rect.right(),
            "edge {e}: {:?} {:?}",
            first.from,
            s.rect
        );
        assert!(last.to.x >= t.rect.x && last.to.x <= t.rect.right());
        for pair in route.curves.windows(2) {
            assert_eq!(pair[0].to, pair[1].from);
        }
        for c in &route.curves {
            assert!(
                c.from.y <= c.c1.y && c.c1.y <= c.c2.y && c.c2.y <= c.to.y,
                "edge {e} goes up"
            );
        }
    }
}

fn lay(p: &Picture) -> Layout {
    let l = layout(p, &Limits::default()).expect("layout");
    check(p, &l);
    l
}

#[test]
fn chain_is_straight() {
    let p = picture(3, &[(0, 1), (1, 2)]);
    let l = lay(&p);
    assert_eq!(l.layers, 3);
    let xs: Vec<f64> = l.nodes.iter().map(|n| n.rect.center_x()).collect();
    assert!(xs.iter().all(|&x| (x - xs[0]).abs() < 0.5), "{xs:?}");
    assert_eq!(l.crossings, 0);
}

#[test]
fn diamond_is_symmetric() {
    let p = picture(4, &[(0, 1), (0, 2), (1, 3), (2, 3)]);
    let l = lay(&p);
    let layers: Vec<usize> = l.nodes.iter().map(|n| n.layer).collect();
    assert_eq!(layers, vec![0, 1, 1, 2]);
    let x = |v: usize| l.nodes[v].rect.center_x();
    assert!((x(0) - x(3)).abs() < 0.5);
    assert!(((x(1) + x(2)) / 2.0 - x(0)).abs() < 0.5);
    assert!(x(1) < x(2), "operand order kept");
    assert_eq!(l.crossings, 0);
}

#[test]
fn parallel_edges_are_distinct() {
    // t1 = x * x; t2 = t1 * t1: two pairs of parallel edges, one labelled.
    let mut p = picture(3, &[(0, 1), (0, 1), (1, 2)]);
    p.edges.push(PictureEdge {
        from: 1,
        to: 2,
        label: Some("1".into()),
    });
    p.edges[2].label = Some("0".into());
    let l = lay(&p);
    for (a, b) in [(0, 1), (2, 3)] {
        let mid = |e: usize| {
            let c = l.edges[e].curves[0];
            c.at(0.5)
        };
        let (ma, mb) = (mid(a), mid(b));
        assert!(
            (ma.x - mb.x).abs() >= 10.0,
            "edges {a} and {b} too close: {ma:?} {mb:?}"
        );
    }
    let la = l.edges[2].label.expect("label").at;
    let lb = l.edges[3].label.expect("label").at;
    assert!((la.x - lb.x).abs() >= 8.0);
    let svg = render_svg(&p, &Limits::default()).unwrap();
    assert_eq!(svg.matches("marker-end=").count(), 4);
    assert!(svg.contains(">0</text>") && svg.contains(">1</text>"));
}

#[test]
fn long_parallel_edges_are_distinct() {
    // 0 -> 1 -> 2 -> 3 and 0 -> 3 twice.
    let p = picture(4, &[(0, 1), (1, 2), (2, 3), (0, 3), (0, 3)]);
    let l = lay(&p);
    assert_eq!(l.dummies, 4);
    let mid_x = |e: usize| l.edges[e].curves[1].from.x;
    assert!((mid_x(3) - mid_x(4)).abs() >= 10.0);
}

#[test]
fn skip_chain_of_30() {
    let p = skip_chain(30);
    assert_eq!(p.nodes.len(), 62);
    let l = lay(&p);
    assert_eq!(l.layers, 62);
    assert_eq!(l.crossings, 0);
    assert_eq!(l.dummies, 30);
}

#[test]
fn random_dag_of_2000() {
    let p = random_dag(2000, 2, 7);
    let l = lay(&p);
    assert!(l.dummies > 0);
}

#[test]
fn wide_graph_of_2000() {
    let edges: Vec<(usize, usize)> = (1..2000).map(|i| (0, i)).collect();
    let p = picture(2000, &edges);
    let l = lay(&p);
    assert_eq!(l.layers, 2);
    assert_eq!(l.crossings, 0);
}

#[test]
fn chain_of_2000_layers() {
    let edges: Vec<(usize, usize)> = (1..2000).map(|i| (i - 1, i)).collect();
    let l = lay(&picture(2000, &edges));
    assert_eq!(l.layers, 2000);
}

#[test]
fn sources_sit_next_to_their_users() {
    // A constant used only at the end of a chain is drawn just above it.
    let mut p = picture(5, &[(0, 1), (1, 2), (2, 3), (4, 3)]);
    p.nodes[4].style = NodeStyle::Constant;
    let l = lay(&p);
    assert_eq!(l.nodes[4].layer, 2);
    assert_eq!(l.dummies, 0);
}

#[test]
fn groups_enclose_their_nodes_only() {
    // x -> [a -> b -> c] -> out, with a param p used by b inside the loop.
    let mut p = picture(6, &[(0, 1), (1, 2), (2, 3), (3, 4), (5, 2)]);
    for v in [1, 2, 3] {
        p.nodes[v].group = Some(0);
    }
    p.groups.push(Group { label: "× B".into() });
    let l = lay(&p);
    let b = l.groups[0].expect("a box");
    let inside = |r: batchgraph::pictures::layout::Rect| {
        r.x >= b.x && r.right() <= b.right() && r.y >= b.y && r.bottom() <= b.bottom()
    };
    let overlaps = |r: batchgraph::pictures::layout::Rect| {
        r.x < b.right() && r.right() > b.x && r.y < b.bottom() && r.bottom() > b.y
    };
    for v in [1, 2, 3] {
        assert!(inside(l.nodes[v].rect), "node {v} outside its group");
    }
    for v in [0, 4, 5] {
        assert!(!overlaps(l.nodes[v].rect), "node {v} inside a group it is not in");
    }
    let svg = render_svg(&p, &Limits::default()).unwrap();
    assert!(svg.contains("stroke-dasharray") && svg.contains("× B"));
}

/// A random DAG with loop bodies over runs of node indices starting at
/// `starts`; checks members lie in their boxes; returns how many nodes lie
/// in a box they are not in.
fn random_groups(seed: u64, starts: &[usize]) -> usize {
    let mut p = random_dag(120, 2, seed);
    for (k, start) in starts.iter().enumerate() {
        let len = 8 + (seed as usize * 7 + k * 5) % 20;
        for v in *start..(*start + len).min(p.nodes.len()) {
            p.nodes[v].group = Some(k);
        }
        p.groups.push(Group {
            label: format!("× {k}"),
        });
    }
    let l = lay(&p);
    let mut strays = 0;
    for (v, place) in l.nodes.iter().enumerate() {
        let r = place.rect;
        for (k, b) in l.groups.iter().enumerate() {
            let b = b.expect("a box");
            if p.nodes[v].group == Some(k) {
                assert!(r.x >= b.x && r.right() <= b.right() && r.y >= b.y && r.bottom() <= b.bottom());
            } else if r.x < b.right() && r.right() > b.x && r.y < b.bottom() && r.bottom() > b.y {
                strays += 1;
            }
        }
    }
    strays
}

#[test]
fn random_groups_keep_boxes_clear() {
    for seed in 0..12u64 {
        assert_eq!(random_groups(seed, &[45]), 0, "seed {seed}, one group");
        assert_eq!(random_groups(seed, &[10, 80]), 0, "seed {seed}, two groups");
        // Three groups entangled over the same layers: members stay in their
        // boxes and edges go down; an outsider may rarely end up inside.
        random_groups(seed, &[10, 45, 80]);
    }
}

#[test]
fn limits_give_errors() {
    let p = skip_chain(30);
    let small = Limits {
        max_nodes: 10,
        ..Limits::default()
    };
    let err = layout(&p, &small).unwrap_err();
    assert_eq!(err, PictureError::TooManyNodes { count: 62, limit: 10 });
    assert!(err.to_string().contains("62") && err.to_string().contains("max_nodes"));

    let few_dummies = Limits {
        max_dummies: 29,
        ..Limits::default()
    };
    let err = render_svg(&p, &few_dummies).unwrap_err();
    assert_eq!(err, PictureError::TooManyDummies { count: 30, limit: 29 });
    assert!(err.to_string().contains("max_dummies"));

    let few_edges = Limits {
        max_edges: 5,
        ..Limits::default()
    };
    assert!(matches!(layout(&p, &few_edges), Err(PictureError::TooManyEdges { .. })));

    // A chain with every node also fed from node 0: ~n²/2 dummies, refused fast.
    let n = 2000;
    let mut edges: Vec<(usize, usize)> = (1..n).map(|i| (i - 1, i)).collect();
    edges.extend((2..n).map(|i| (0, i)));
    let err = layout(&picture(n, &edges), &Limits::default()).unwrap_err();
    assert!(matches!(err, PictureError::TooManyDummies { count, .. } if count > 1_000_000));
}

#[test]
fn cycles_give_errors() {
    let p = picture(4, &[(0, 1), (1, 2), (2, 3), (3, 1)]);
    match layout(&p, &Limits::default()) {
        Err(PictureError::Cycle { node }) => assert!((1..=3).contains(&node)),
        other => panic!("expected a cycle error, got {other:?}"),
    }
    let looped = picture(2, &[(0, 1), (1, 1)]);
    assert_eq!(
        layout(&looped, &Limits::default()).unwrap_err(),
        PictureError::Cycle { node: 1 }
    );
    // A long cycle: no recursion, no hang.
    let n = 5000;
    let edges: Vec<(usize, usize)> = (0..n).map(|i| (i, (i + 1) % n)).collect();
    assert!(matches!(
        layout(&picture(n, &edges), &Limits::default()),
        Err(PictureError::Cycle { .. })
    ));
}

#[test]
fn bad_indices_give_errors() {
    let p = picture(2, &[(0, 5)]);
    assert_eq!(
        layout(&p, &Limits::default()).unwrap_err(),
        PictureError::EdgeOutOfRange {
            edge: 0,
            node: 5,
            nodes: 2
        }
    );
    let mut p = picture(2, &[(0, 1)]);
    p.nodes[1].group = Some(3);
    assert!(matches!(
        layout(&p, &Limits::default()),
        Err(PictureError::GroupOutOfRange { .. })
    ));
}

#[test]
fn empty_and_edgeless() {
    let svg = render_svg(&Picture::default(), &Limits::default()).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    let l = lay(&picture(3, &[]));
    assert_eq!(l.layers, 1);
}

#[test]
fn rendering_is_deterministic() {
    let p = random_dag(300, 2, 11);
    let a = render_svg(&p, &Limits::default()).unwrap();
    let b = render_svg(&p.clone(), &Limits::default()).unwrap();
    assert_eq!(a, b);
    let s = skip_chain(5);
    assert_eq!(render_svg(&s, &Limits::default()), render_svg(&s, &Limits::default()));
}

#[test]
fn text_is_escaped() {
    let mut p = picture(2, &[(0, 1)]);
    p.nodes[0].title = "a<b> & \"c\"".into();
    p.nodes[1].detail = "<[2]>".into();
    p.edges[0].label = Some("<0>".into());
    let svg = render_svg(&p, &Limits::default()).unwrap();
    assert!(svg.contains("a&lt;b&gt; &amp; &quot;c&quot;"));
    assert!(svg.contains("&lt;[2]&gt;") && svg.contains("&lt;0&gt;"));
    assert!(!svg.contains("a<b>"));
    assert!(svg.contains("viewBox=\"0 0 ") && svg.contains("sans-serif"));
}
