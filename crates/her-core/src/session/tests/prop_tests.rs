//! Random op sequences: the file replays to exactly the tree in memory.

use proptest::prelude::*;
use serde_json::json;

use super::*;

#[derive(Debug, Clone)]
pub(super) enum Op {
    Append(String),
    AppendRoot(String),
    Swipe(usize, String),
    Edit(usize, String),
    Continue(usize, String),
    Select(usize, usize),
    Cycle(usize, bool),
    Delete(usize),
    Jump(usize),
    Rename(String),
    Rate(usize),
}

fn text() -> impl Strategy<Value = String> {
    // Quotes, newlines, tags and non-ASCII exercise the JSON escaping.
    "[a-zé \"\\\\\n<>/]{0,12}"
}

pub(super) fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => text().prop_map(Op::Append),
        1 => text().prop_map(Op::AppendRoot),
        2 => (any::<usize>(), text()).prop_map(|(n, t)| Op::Swipe(n, t)),
        1 => (any::<usize>(), text()).prop_map(|(n, t)| Op::Edit(n, t)),
        1 => (any::<usize>(), text()).prop_map(|(n, t)| Op::Continue(n, t)),
        1 => (any::<usize>(), 0..4usize).prop_map(|(n, i)| Op::Select(n, i)),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(n, r)| Op::Cycle(n, r)),
        2 => any::<usize>().prop_map(Op::Delete),
        1 => any::<usize>().prop_map(Op::Jump),
        1 => text().prop_map(Op::Rename),
        1 => any::<usize>().prop_map(Op::Rate),
    ]
}

/// The events an op makes on `s` (none when it does not apply there).
pub(super) fn events(s: &Session, op: &Op) -> Vec<SessionEvent> {
    let tree = s.tree();
    let pick = |n: usize| NodeId(1 + n % tree.len().max(1));
    let reply = |t: &str| msg("Elizabeth", Role::Character, t);
    let one = |r: Result<SessionEvent, TreeError>| r.into_iter().collect::<Vec<_>>();
    if tree.is_empty() && !matches!(op, Op::Append(_) | Op::AppendRoot(_) | Op::Rename(_)) {
        return Vec::new();
    }
    match op {
        Op::Append(t) => vec![tree.append_event(msg("Darcy", Role::User, t))],
        Op::AppendRoot(t) => one(tree.append_under_event(NodeId::ROOT, reply(t))),
        Op::Swipe(n, t) => one(tree.swipe_event(pick(*n), reply(t))),
        Op::Edit(n, t) => one(tree.edit_event(pick(*n), t.clone())),
        Op::Continue(n, t) => one(tree.continue_event(pick(*n), t, MessageMeta::default())),
        Op::Select(n, i) => one(tree.select_event(pick(*n), *i)),
        Op::Cycle(n, right) => tree
            .cycle_event(pick(*n), if *right { 1 } else { -1 })
            .ok()
            .flatten()
            .into_iter()
            .collect(),
        Op::Delete(n) => one(tree.delete_event(pick(*n))),
        Op::Jump(n) => tree.jump_to_events(pick(*n)).unwrap_or_default(),
        Op::Rename(t) => vec![s.rename_event(t.clone())],
        Op::Rate(n) => {
            let key = tree.node(pick(*n)).map(|n| n.key.clone());
            vec![SessionEvent::Other(
                json!({"type": "rating", "key": key, "score": 1}),
            )]
        }
    }
}

/// The selection follows a live alternative whenever there is one.
fn selections_are_live(tree: &BranchTree) -> bool {
    std::iter::once(NodeId::ROOT)
        .chain(tree.nodes().map(|n| n.id))
        .all(|id| {
            let node = tree.node(id).unwrap();
            tree.visible_children(id).is_empty()
                || node
                    .children
                    .get(node.selected)
                    .is_some_and(|&c| !tree.node(c).unwrap().deleted)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn replay_equals_memory(ops in proptest::collection::vec(op(), 0..40)) {
        let dir = tempfile::tempdir().unwrap();
        let (mut file, mut session) = create(dir.path(), "prop");
        let mut shadow = session.clone();
        for op in &ops {
            for event in events(&session, op) {
                file.commit(&mut session, event.clone()).unwrap();
                shadow.apply(&event).unwrap();
            }
            prop_assert!(selections_are_live(session.tree()));
        }
        let path = file.path().to_path_buf();
        drop(file);
        let (_, back, issues) = SessionFile::open(&path).unwrap();
        prop_assert!(issues.is_empty(), "{:?}", issues);
        prop_assert_eq!(&back, &session);
        prop_assert_eq!(back.tree(), shadow.tree());
        prop_assert_eq!(back.title(), shadow.title());
        prop_assert_eq!(back.tree().active_path(), session.tree().active_path());
        prop_assert_eq!(back.tree().rows(), session.tree().rows());
        prop_assert_eq!(back.other_events().len(), shadow.other_events().len());
        let summary = list_sessions(dir.path()).unwrap();
        prop_assert_eq!(summary[0].messages, session.tree().len());
        prop_assert_eq!(summary[0].title.as_str(), session.title());
    }
}
