//! Tree ops applied in memory.

use super::*;

fn session() -> Session {
    Session::new(header("Ball"))
}

/// g → u → r, returns their ids.
fn chain(s: &mut Session) -> (NodeId, NodeId, NodeId) {
    let g = apply(s, |t| {
        t.append_event(msg("Elizabeth", Role::Character, "Hello."))
    });
    let u = apply(s, |t| t.append_event(msg("Darcy", Role::User, "Madam.")));
    let r = apply(s, |t| {
        t.append_event(msg("Elizabeth", Role::Character, "Sir."))
    });
    (g.unwrap(), u.unwrap(), r.unwrap())
}

#[test]
fn append_follows_the_leaf() {
    let mut s = session();
    assert_eq!(s.tree().leaf(), NodeId::ROOT);
    assert!(s.tree().active_path().is_empty());
    let (g, u, r) = chain(&mut s);
    assert_eq!(s.tree().active_path(), vec![g, u, r]);
    assert_eq!(s.tree().leaf(), r);
    assert_eq!(s.tree().path_to(u), vec![g, u]);
    assert_eq!(s.tree().len(), 3);
    let node = s.tree().node(u).unwrap();
    assert_eq!(node.parent, Some(g));
    assert_eq!(s.tree().find(&node.key), Some(u));
}

#[test]
fn swipe_select_and_cycle() {
    let mut s = session();
    let (_, u, r1) = chain(&mut s);
    let r2 = apply(&mut s, |t| {
        t.swipe_event(r1, msg("Elizabeth", Role::Character, "Two."))
            .unwrap()
    })
    .unwrap();
    let r3 = apply(&mut s, |t| {
        t.swipe_event(r1, msg("Elizabeth", Role::Character, "Three."))
            .unwrap()
    })
    .unwrap();
    assert_eq!(s.tree().leaf(), r3);
    assert_eq!(s.tree().siblings_of(r1), (0, 3));
    assert_eq!(s.tree().siblings_of(r3), (2, 3));

    apply(&mut s, |t| t.select_event(u, 1).unwrap());
    assert_eq!(s.tree().leaf(), r2);
    // → from the last wraps to the first, ← from the first to the last.
    apply(&mut s, |t| t.cycle_event(r2, 1).unwrap().unwrap());
    assert_eq!(s.tree().leaf(), r3);
    apply(&mut s, |t| t.cycle_event(r3, 1).unwrap().unwrap());
    assert_eq!(s.tree().leaf(), r1);
    apply(&mut s, |t| t.cycle_event(r1, -1).unwrap().unwrap());
    assert_eq!(s.tree().leaf(), r3);

    assert!(matches!(
        s.tree().select_event(u, 3),
        Err(TreeError::NoSuchAlternative {
            index: 3,
            count: 3,
            ..
        })
    ));
    // A lone message has nothing to cycle to.
    assert_eq!(s.tree().cycle_event(u, 1).unwrap(), None);
    assert_eq!(
        s.tree().swipe_event(NodeId::ROOT, msg("x", Role::User, "")),
        Err(TreeError::Root)
    );
}

#[test]
fn edit_keeps_the_original() {
    let mut s = session();
    let (g, u, r) = chain(&mut s);
    let e = apply(&mut s, |t| t.edit_event(u, "Miss Bennet.").unwrap()).unwrap();
    let tree = s.tree();
    assert_eq!(tree.active_path(), vec![g, e]);
    let edited = &tree.node(e).unwrap().message;
    assert_eq!(edited.text, "Miss Bennet.");
    assert_eq!(edited.speaker, "Darcy");
    assert_eq!(edited.role, Role::User);
    assert_eq!(
        edited.meta.edited_from.as_deref(),
        Some(tree.node(u).unwrap().key.as_str())
    );
    // The old version and its reply are still there, one swipe away.
    assert_eq!(tree.node(u).unwrap().message.text, "Madam.");
    assert_eq!(tree.siblings_of(e), (1, 2));
    apply(&mut s, |t| t.select_event(g, 0).unwrap());
    assert_eq!(s.tree().active_path(), vec![g, u, r]);
}

#[test]
fn continue_extends_the_text() {
    let mut s = session();
    let (_, _, r) = chain(&mut s);
    let meta = MessageMeta {
        finish_reason: Some("stop".into()),
        ..MessageMeta::default()
    };
    let c = apply(&mut s, |t| {
        t.continue_event(r, " Good night.", meta).unwrap()
    })
    .unwrap();
    let m = &s.tree().node(c).unwrap().message;
    assert_eq!(m.text, "Sir. Good night.");
    assert_eq!(m.meta.finish_reason.as_deref(), Some("stop"));
    assert_eq!(
        m.meta.continued_from.as_deref(),
        Some(s.tree().node(r).unwrap().key.as_str())
    );
    assert_eq!(s.tree().leaf(), c);
}

#[test]
fn deleting_the_selected_alternative_moves_the_selection() {
    let mut s = session();
    let (_, u, r1) = chain(&mut s);
    let r2 = apply(&mut s, |t| {
        t.swipe_event(r1, msg("E", Role::Character, "2")).unwrap()
    })
    .unwrap();
    let r3 = apply(&mut s, |t| {
        t.swipe_event(r1, msg("E", Role::Character, "3")).unwrap()
    })
    .unwrap();
    apply(&mut s, |t| t.select_event(u, 1).unwrap());

    // The middle one goes: the next one is shown.
    apply(&mut s, |t| t.delete_event(r2).unwrap());
    assert_eq!(s.tree().leaf(), r3);
    assert_eq!(s.tree().siblings_of(r3), (1, 2));
    assert_eq!(s.tree().siblings_of(r1), (0, 2));
    assert_eq!(s.tree().visible_children(u), vec![r1, r3]);
    // The last one goes: the previous one is shown.
    apply(&mut s, |t| t.delete_event(r3).unwrap());
    assert_eq!(s.tree().leaf(), r1);
    assert_eq!(s.tree().siblings_of(r1), (0, 1));
    // Deleting a non-selected alternative leaves the selection alone.
    let r4 = apply(&mut s, |t| {
        t.swipe_event(r1, msg("E", Role::Character, "4")).unwrap()
    })
    .unwrap();
    apply(&mut s, |t| t.delete_event(r1).unwrap());
    assert_eq!(s.tree().leaf(), r4);
    // The only one goes: the path ends at the parent.
    apply(&mut s, |t| t.delete_event(r4).unwrap());
    assert_eq!(s.tree().leaf(), u);
    assert_eq!(s.tree().len(), 6, "nothing is physically removed");
    assert!(s.tree().node(r4).unwrap().deleted);
    // Deleted nodes cannot be selected, edited or continued.
    let key = s.tree().node(r4).unwrap().key.clone();
    let select = SessionEvent::Select {
        parent: Some(s.tree().node(u).unwrap().key.clone()),
        child: key.clone(),
    };
    assert_eq!(s.apply(&select), Err(TreeError::Deleted(key)));
    assert!(s.tree().edit_event(r4, "x").is_err());
    // Appending under the leaf continues from the parent.
    let r5 = apply(&mut s, |t| t.append_event(msg("E", Role::Character, "5"))).unwrap();
    assert_eq!(s.tree().node(r5).unwrap().parent, Some(u));
}

#[test]
fn deleting_a_subtree_root_hides_its_descendants() {
    let mut s = session();
    let (g, u, r) = chain(&mut s);
    apply(&mut s, |t| t.delete_event(u).unwrap());
    assert_eq!(s.tree().active_path(), vec![g]);
    assert!(
        s.tree()
            .rows()
            .iter()
            .all(|row| row.node != r && row.node != u)
    );
    assert!(s.tree().jump_to_events(r).is_err());
}

#[test]
fn jump_to_selects_every_ancestor() {
    let mut s = session();
    let (g1, u, r) = chain(&mut s);
    // An alternative greeting (a second root) is now active.
    let g2 = apply(&mut s, |t| {
        t.append_under_event(NodeId::ROOT, msg("Elizabeth", Role::Character, "Hi."))
            .unwrap()
    })
    .unwrap();
    let u2 = apply(&mut s, |t| t.append_event(msg("Darcy", Role::User, "Yes?"))).unwrap();
    let r2 = apply(&mut s, |t| {
        t.swipe_event(r, msg("Elizabeth", Role::Character, "Sir!"))
            .unwrap()
    })
    .unwrap();
    assert_eq!(s.tree().active_path(), vec![g2, u2]);

    let events = s.tree().jump_to_events(r).unwrap();
    assert_eq!(events.len(), 2, "root and u change; g1 already selects u");
    for e in events {
        s.apply(&e).unwrap();
    }
    assert_eq!(s.tree().active_path(), vec![g1, u, r]);
    assert!(s.tree().jump_to_events(r).unwrap().is_empty());
    // Jumping to a node in the middle keeps the selection below it.
    apply(&mut s, |t| t.select_event(u, 1).unwrap());
    for e in s.tree().jump_to_events(g2).unwrap() {
        s.apply(&e).unwrap();
    }
    for e in s.tree().jump_to_events(u).unwrap() {
        s.apply(&e).unwrap();
    }
    assert_eq!(s.tree().active_path(), vec![g1, u, r2]);
}

#[test]
fn rows_depth_first_with_active_marks() {
    let mut s = session();
    let (g1, u, r1) = chain(&mut s);
    let r2 = apply(&mut s, |t| {
        t.swipe_event(r1, msg("Elizabeth", Role::Character, "Two."))
            .unwrap()
    })
    .unwrap();
    let g2 = apply(&mut s, |t| {
        t.append_under_event(NodeId::ROOT, msg("Elizabeth", Role::Character, "Hi."))
            .unwrap()
    })
    .unwrap();
    for e in s.tree().jump_to_events(r2).unwrap() {
        s.apply(&e).unwrap();
    }
    let rows = s.tree().rows();
    let shape: Vec<(NodeId, usize, bool, usize)> = rows
        .iter()
        .map(|r| (r.node, r.depth, r.on_active_path, r.alternatives))
        .collect();
    assert_eq!(
        shape,
        vec![
            (g1, 0, true, 2),
            (u, 1, true, 1),
            (r1, 2, false, 2),
            (r2, 2, true, 2),
            (g2, 0, false, 2),
        ]
    );
    assert_eq!(rows[1].label, "Darcy: Madam.");
}

#[test]
fn labels_show_visible_text_only() {
    let mut s = session();
    let text = "<system_thinking>She should tease him, at length and with wit.</system_thinking>Elizabeth: <role_thinking>Proud man.</role_thinking><role_action>smiles</role_action>You are too kind, Mr. Darcy, far too kind.";
    let n = apply(&mut s, |t| {
        t.append_event(msg("Elizabeth", Role::Character, text))
    })
    .unwrap();
    let row = s.tree().rows().into_iter().find(|r| r.node == n).unwrap();
    assert_eq!(
        row.label,
        "Elizabeth: (smiles) You are too kind, Mr. Darcy, fa…"
    );
}

#[test]
fn apply_rejects_what_does_not_fit() {
    let mut s = session();
    let (g, _, _) = chain(&mut s);
    let g_key = s.tree().node(g).unwrap().key.clone();
    let dup = SessionEvent::Message {
        key: g_key.clone(),
        parent: None,
        message: msg("x", Role::User, ""),
    };
    assert_eq!(s.apply(&dup), Err(TreeError::DuplicateKey(g_key.clone())));
    let orphan = SessionEvent::Message {
        key: "k".into(),
        parent: Some("nope".into()),
        message: msg("x", Role::User, ""),
    };
    assert_eq!(s.apply(&orphan), Err(TreeError::UnknownKey("nope".into())));
    let wrong = SessionEvent::Select {
        parent: None,
        child: s.tree().node(s.tree().leaf()).unwrap().key.clone(),
    };
    assert!(matches!(s.apply(&wrong), Err(TreeError::NotAChild { .. })));
    assert_eq!(
        s.apply(&SessionEvent::Header(header("again"))),
        Err(TreeError::Header)
    );
    let fake = SessionEvent::Other(serde_json::json!({"type": "delete", "key": g_key}));
    assert!(matches!(s.apply(&fake), Err(TreeError::BadExtension(_))));
    assert_eq!(s.tree().len(), 3);
    assert!(!s.tree().node(g).unwrap().deleted);
}
