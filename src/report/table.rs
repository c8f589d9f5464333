//! The column layout shared by the table views (summary, status, history): left-aligned
//! columns, every cell escaped and kept on one line.

use std::borrow::Cow;

use crate::text::escape_line;

/// Left-aligned columns separated by two spaces; trailing spaces trimmed. Every cell is shown
/// on one line with its control characters (newlines too) escaped, so host-supplied cells can
/// neither reach the terminal raw nor break the table.
pub fn table(rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<Cow<str>>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| escape_line(cell)).collect())
        .collect();
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for row in &rows {
        for (index, cell) in row.iter().enumerate() {
            widths[index] = widths[index].max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in &rows {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if index + 1 < row.len() {
                let padding = widths[index] - cell.chars().count() + 2;
                line.push_str(&" ".repeat(padding));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_cells_stay_on_one_line_and_aligned() {
        let rows = vec![
            vec!["NAME".to_string(), "VALUE".to_string(), "END".to_string()],
            vec![
                "evil\u{1b}[2J".to_string(),
                "two\nlines\r".to_string(),
                "x".to_string(),
            ],
            vec!["ok".to_string(), "fine".to_string(), "y".to_string()],
        ];
        insta::assert_snapshot!(table(&rows), @r"
        NAME         VALUE         END
        evil\x1b[2J  two\nlines\r  x
        ok           fine          y
        ");
    }
}
