//! Where in the file a dotted key (`projects.shop.processes[0]`) is, so a
//! validation error can name its line as a syntax error does.

use toml::de::{DeTable, DeValue};

/// The 1-based line of `key` in `text`, or of the deepest part of it that
/// exists.
pub fn line_of(text: &str, key: &str) -> Option<usize> {
    let doc = DeTable::parse(text).ok()?;
    let mut at = None;
    let mut value: Option<&DeValue<'_>> = None;
    for part in key.split('.') {
        let (name, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        let table = match value {
            None => doc.get_ref(),
            Some(DeValue::Table(t)) => t,
            Some(_) => break,
        };
        let Some((k, v)) = table.iter().find(|(k, _)| k.get_ref() == name) else {
            break;
        };
        at = Some(k.span().start);
        value = Some(v.get_ref());
        for index in indexes
            .split(['[', ']'])
            .filter_map(|i| i.parse::<usize>().ok())
        {
            let Some(DeValue::Array(items)) = value else {
                break;
            };
            let Some(item) = items.get(index) else { break };
            at = Some(item.span().start);
            value = Some(item.get_ref());
        }
    }
    at.map(|offset| text[..offset.min(text.len())].matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::line_of;

    #[test]
    fn finds_tables_keys_and_array_items() {
        let text = "state_dir = \"s\"\n\n[projects.shop]\ndir = \"x\"\n\n[[projects.shop.processes]]\nname = \"a\"\n\n[[projects.shop.processes]]\nname = \"b\"\n";
        assert_eq!(line_of(text, "state_dir"), Some(1));
        assert_eq!(line_of(text, "projects.shop.dir"), Some(4));
        assert_eq!(line_of(text, "projects.shop.processes[1]"), Some(9));
        assert_eq!(
            line_of(text, "projects.shop.nothing"),
            Some(3),
            "the deepest part that exists"
        );
        assert_eq!(line_of(text, "nowhere"), None);
    }
}
