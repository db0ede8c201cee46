//! How a node is shown to people, the same in API messages and CLI output: `name (id)`, or
//! the id alone for a node without a name.

/// `db-1 (7)`, or `7` without a name.
pub fn node_label(id: u64, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{name} ({id})"),
        None => id.to_string(),
    }
}

/// What naming an unknown member gets: the name asked for and every member.
pub fn unknown_member<'a>(
    asked: &str,
    members: impl IntoIterator<Item = (u64, Option<&'a str>)>,
) -> String {
    let known: Vec<String> = members
        .into_iter()
        .map(|(id, name)| node_label(id, name))
        .collect();
    format!(
        "no member is named {asked:?}; the members are {}",
        known.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_the_unknown_member_message() {
        assert_eq!(node_label(7, Some("db-1")), "db-1 (7)");
        assert_eq!(node_label(7, None), "7");
        assert_eq!(
            unknown_member("db-9", [(1, Some("db-1")), (2, None)]),
            "no member is named \"db-9\"; the members are db-1 (1), 2"
        );
    }
}
