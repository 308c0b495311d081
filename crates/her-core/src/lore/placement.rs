//! Activated entries sorted into the places of the prompt, in SillyTavern's
//! order: within each place, lower `order` first (entries of equal order in
//! reverse activation order, as its `unshift` leaves them); empty content is
//! dropped. The prompt builder maps these places onto HER's layout.

use super::explain::{Activation, Placement};
use super::model::Role;

/// Entries inserted at one depth as one role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepthInsert {
    pub depth: u32,
    pub role: Role,
    pub entries: Vec<String>,
}

/// Entries for one `{{outlet::NAME}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outlet {
    pub name: String,
    pub entries: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Arranged {
    pub before_char: Vec<String>,
    pub after_char: Vec<String>,
    pub scenario: Vec<String>,
    pub author_note_top: Vec<String>,
    pub author_note_bottom: Vec<String>,
    pub examples_top: Vec<String>,
    pub examples_bottom: Vec<String>,
    /// In order of first appearance from the highest `order` down.
    pub at_depth: Vec<DepthInsert>,
    pub outlets: Vec<Outlet>,
}

/// Sorts `activated` into places. Outlets keep the ascending order of every
/// other place (SillyTavern leaves outlet text in descending order, unlike
/// all its other places).
pub fn arrange(activated: &[Activation]) -> Arranged {
    let mut sorted: Vec<&Activation> = activated.iter().collect();
    sorted.sort_by_key(|a| std::cmp::Reverse(a.order));
    let mut out = Arranged::default();
    // Walking the descending list and putting each entry first gives the
    // ascending order.
    for a in sorted.iter().filter(|a| !a.content.is_empty()) {
        let text = a.content.clone();
        match &a.placement {
            Placement::BeforeChar => out.before_char.insert(0, text),
            Placement::AfterChar => out.after_char.insert(0, text),
            Placement::Scenario => out.scenario.insert(0, text),
            Placement::AuthorNoteTop => out.author_note_top.insert(0, text),
            Placement::AuthorNoteBottom => out.author_note_bottom.insert(0, text),
            Placement::ExamplesTop => out.examples_top.insert(0, text),
            Placement::ExamplesBottom => out.examples_bottom.insert(0, text),
            Placement::AtDepth { depth, role } => {
                match out
                    .at_depth
                    .iter_mut()
                    .find(|d| d.depth == *depth && d.role == *role)
                {
                    Some(group) => group.entries.insert(0, text),
                    None => out.at_depth.push(DepthInsert {
                        depth: *depth,
                        role: *role,
                        entries: vec![text],
                    }),
                }
            }
            Placement::Outlet { name } if name.is_empty() => {}
            Placement::Outlet { name } => match out.outlets.iter_mut().find(|o| o.name == *name) {
                Some(outlet) => outlet.entries.insert(0, text),
                None => out.outlets.push(Outlet {
                    name: name.clone(),
                    entries: vec![text],
                }),
            },
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lore::explain::Why;

    fn act(uid: u32, order: i64, placement: Placement, content: &str) -> Activation {
        Activation {
            book: "b".into(),
            uid,
            comment: String::new(),
            content: content.into(),
            placement,
            order,
            tokens: 1,
            pass: 1,
            why: Why::Constant,
        }
    }

    #[test]
    fn places_fill_in_ascending_order() {
        let depth2 = Placement::AtDepth {
            depth: 2,
            role: Role::User,
        };
        let outlet = Placement::Outlet { name: "map".into() };
        let arranged = arrange(&[
            act(1, 300, Placement::BeforeChar, "late"),
            act(2, 100, Placement::BeforeChar, "early"),
            act(3, 200, Placement::BeforeChar, "middle"),
            act(4, 100, depth2.clone(), "d-low"),
            act(5, 500, depth2, "d-high"),
            act(6, 50, outlet.clone(), "o1"),
            act(7, 60, outlet, "o2"),
            act(8, 10, Placement::AfterChar, ""),
            act(
                9,
                10,
                Placement::Outlet {
                    name: String::new(),
                },
                "lost",
            ),
        ]);
        assert_eq!(arranged.before_char, ["early", "middle", "late"]);
        assert_eq!(arranged.at_depth.len(), 1);
        assert_eq!(arranged.at_depth[0].entries, ["d-low", "d-high"]);
        assert_eq!(arranged.outlets[0].entries, ["o1", "o2"]);
        assert!(arranged.after_char.is_empty(), "empty content is dropped");
        assert_eq!(
            arranged.outlets.len(),
            1,
            "an outlet without a name is dropped"
        );
    }
}
