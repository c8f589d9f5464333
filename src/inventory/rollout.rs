//! Rollout shape (`[deploy].batch_size`): a number, a percentage of the selection, or a ramp of
//! those, and how it cuts a list of hosts into switch batches. Pure: parsing a TOML value into
//! `BatchSize` (a plain message on error; `validation` adds the location) and `batch_sizes`.

/// One batch's size: a number of hosts, or a percentage of the service's selected hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Count(usize),
    /// 1..=100; rounded down, at least one host.
    Percent(u8),
}

impl Size {
    fn hosts(self, selected: usize) -> usize {
        match self {
            Size::Count(count) => count,
            Size::Percent(percent) => (selected.saturating_mul(usize::from(percent)) / 100).max(1),
        }
    }

    fn text(self) -> String {
        match self {
            Size::Count(count) => count.to_string(),
            Size::Percent(percent) => format!("\"{percent}%\""),
        }
    }
}

/// `batch_size`: how many hosts switch at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchSize {
    /// `0` (the default): every host in one batch.
    All,
    /// The size of every batch.
    Fixed(Size),
    /// Each entry the size of the next batch; the last one repeats. The first batch is the canary.
    Ramp(Vec<Size>),
}

impl BatchSize {
    /// The sizes of the successive batches for `count` hosts to switch, out of `selected`
    /// hosts of the service (percentages are of `selected`). Every size is at least 1 and
    /// they add up to `count`.
    pub fn batch_sizes(&self, count: usize, selected: usize) -> Vec<usize> {
        let steps: Vec<Size> = match self {
            BatchSize::All => return if count == 0 { Vec::new() } else { vec![count] },
            BatchSize::Fixed(size) => vec![*size],
            BatchSize::Ramp(sizes) => sizes.clone(),
        };
        let mut sizes = Vec::new();
        let mut left = count;
        let mut index = 0;
        while left > 0 {
            let step = steps[index.min(steps.len() - 1)];
            let size = step.hosts(selected).clamp(1, left);
            sizes.push(size);
            left -= size;
            index += 1;
        }
        sizes
    }

    /// The value as written in an inventory (for messages and dry runs).
    pub fn text(&self) -> String {
        match self {
            BatchSize::All => "0".to_string(),
            BatchSize::Fixed(size) => size.text(),
            BatchSize::Ramp(sizes) => format!(
                "[{}]",
                sizes
                    .iter()
                    .map(|size| size.text())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

const SHAPE: &str = "batch_size must be a number of hosts (0: all at once), a percentage such as \"10%\", \
                     or a ramp such as [1, \"10%\", \"100%\"]";

/// Parses `batch_size` from its TOML value.
pub(super) fn parse_batch_size(value: &toml::Value) -> Result<BatchSize, String> {
    match value {
        toml::Value::Integer(0) => Ok(BatchSize::All),
        toml::Value::Array(entries) => {
            if entries.is_empty() {
                return Err(format!("{SHAPE}; the ramp is empty"));
            }
            entries
                .iter()
                .enumerate()
                .map(|(index, entry)| {
                    parse_size(entry).map_err(|problem| {
                        format!("{SHAPE}; entry {} of the ramp: {problem}", index + 1)
                    })
                })
                .collect::<Result<Vec<Size>, String>>()
                .map(BatchSize::Ramp)
        }
        other => parse_size(other)
            .map(BatchSize::Fixed)
            .map_err(|problem| format!("{SHAPE}; {problem}")),
    }
}

fn parse_size(value: &toml::Value) -> Result<Size, String> {
    match value {
        toml::Value::Integer(count) => usize::try_from(*count)
            .ok()
            .filter(|count| *count >= 1)
            .map(Size::Count)
            .ok_or_else(|| format!("{count} is not a number of hosts (at least 1)")),
        toml::Value::String(text) => {
            let percent = text
                .strip_suffix('%')
                .filter(|digits| {
                    !digits.is_empty() && digits.chars().all(|digit| digit.is_ascii_digit())
                })
                .and_then(|digits| digits.parse::<u8>().ok())
                .filter(|percent| (1..=100).contains(percent));
            percent.map(Size::Percent).ok_or_else(|| {
                format!(
                    "{:?} is not a percentage from \"1%\" to \"100%\"",
                    crate::text::escape_line(text)
                )
            })
        }
        other => Err(format!("a {} is not a batch size", other.type_str())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<BatchSize, String> {
        let table: toml::Table = toml::from_str(&format!("value = {text}")).expect("toml");
        parse_batch_size(&table["value"])
    }

    #[test]
    fn values() {
        assert_eq!(parsed("0"), Ok(BatchSize::All));
        assert_eq!(parsed("3"), Ok(BatchSize::Fixed(Size::Count(3))));
        assert_eq!(parsed("\"10%\""), Ok(BatchSize::Fixed(Size::Percent(10))));
        assert_eq!(
            parsed("[1, \"10%\", \"100%\"]"),
            Ok(BatchSize::Ramp(vec![
                Size::Count(1),
                Size::Percent(10),
                Size::Percent(100)
            ]))
        );
        for bad in [
            "-1",
            "\"0%\"",
            "\"101%\"",
            "\"10\"",
            "\"%\"",
            "\"1.5%\"",
            "[]",
            "[0]",
            "[1, \"x\"]",
            "1.5",
            "true",
            "[[1]]",
        ] {
            let error = parsed(bad).expect_err(bad);
            assert!(error.starts_with("batch_size must be"), "{bad}: {error}");
        }
    }

    proptest::proptest! {
        /// Any string or integer either parses or is refused with the shape; never a panic.
        #[test]
        fn any_value_parses_or_is_refused(text in ".{0,12}", number in proptest::num::i64::ANY) {
            for value in [toml::Value::String(text.clone()), toml::Value::Integer(number)] {
                if let Err(error) = parse_batch_size(&value) {
                    proptest::prop_assert!(error.starts_with("batch_size must be"));
                }
            }
        }

        /// Batches are never empty and cover exactly the hosts to switch, whatever the ramp.
        #[test]
        fn batches_cover_every_host(
            steps in proptest::collection::vec((1usize..50, 1u8..=100, proptest::bool::ANY), 1..5),
            count in 0usize..300,
            extra in 0usize..100,
        ) {
            let ramp = BatchSize::Ramp(
                steps
                    .iter()
                    .map(|&(hosts, percent, is_count)| {
                        if is_count { Size::Count(hosts) } else { Size::Percent(percent) }
                    })
                    .collect(),
            );
            let sizes = ramp.batch_sizes(count, count + extra);
            proptest::prop_assert_eq!(sizes.iter().sum::<usize>(), count);
            proptest::prop_assert!(sizes.iter().all(|&size| size >= 1));
        }
    }

    #[test]
    fn batches() {
        assert_eq!(BatchSize::All.batch_sizes(5, 5), vec![5]);
        assert_eq!(BatchSize::All.batch_sizes(0, 5), Vec::<usize>::new());
        assert_eq!(
            BatchSize::Fixed(Size::Count(2)).batch_sizes(5, 5),
            vec![2, 2, 1]
        );
        // 10% of 25 is 2 (rounded down); of 5 it is at least one.
        assert_eq!(
            BatchSize::Fixed(Size::Percent(10)).batch_sizes(5, 25),
            vec![2, 2, 1]
        );
        assert_eq!(
            BatchSize::Fixed(Size::Percent(10)).batch_sizes(3, 5),
            vec![1, 1, 1]
        );
        let ramp = parsed("[1, \"50%\", \"100%\"]").expect("ramp");
        assert_eq!(ramp.batch_sizes(3, 3), vec![1, 1, 1]);
        assert_eq!(ramp.batch_sizes(10, 10), vec![1, 5, 4]);
        // The last entry repeats.
        let ramp = parsed("[1, 2]").expect("ramp");
        assert_eq!(ramp.batch_sizes(7, 7), vec![1, 2, 2, 2]);
        assert_eq!(ramp.text(), "[1, 2]");
    }
}
