//! Host ranges (SPEC §2): `name = "web[01:12]"`, `address = "10.0.1.[11:22]"`. One `[FIRST:LAST]`
//! per value, expanded in order from FIRST to LAST (ascending or descending); when FIRST has a
//! leading zero every number is zero-padded to FIRST's width (`web[01:12]` gives `web01` ...
//! `web12`). A host entry whose name is a range becomes one host per number; its address is either
//! a range of the same length (the n-th name gets the n-th address) or a plain address shared by
//! all of them.

/// The most hosts one range may expand to (a typo such as `[1:100000]` is an error, not a fleet).
pub(super) const MAX_RANGE: u64 = 10_000;

/// Expands `text`: `None` when it holds no `[`...`]` range, the expansion otherwise.
pub(super) fn expand(text: &str) -> Result<Option<Vec<String>>, String> {
    let Some(open) = text.find('[') else {
        if text.contains(']') {
            return Err(format!("`{text}` has a `]` without its `[`"));
        }
        return Ok(None);
    };
    let rest = &text[open + 1..];
    let Some(close) = rest.find(']') else {
        return Err(format!("range in `{text}` has no closing `]`"));
    };
    let prefix = &text[..open];
    let inner = &rest[..close];
    let suffix = &rest[close + 1..];
    if suffix.contains('[') || suffix.contains(']') {
        return Err(format!(
            "`{text}` holds more than one range; at most one is allowed"
        ));
    }
    let shape = || {
        format!(
            "range `[{inner}]` in `{text}` must be [FIRST:LAST] with decimal numbers, e.g. web[01:12]"
        )
    };
    let (first, last) = inner.split_once(':').ok_or_else(shape)?;
    let digits = |value: &str| !value.is_empty() && value.chars().all(|c| c.is_ascii_digit());
    if !digits(first) || !digits(last) || first.len() > 9 || last.len() > 9 {
        return Err(shape());
    }
    let start: u64 = first.parse().map_err(|_| shape())?;
    let end: u64 = last.parse().map_err(|_| shape())?;
    let count = start.abs_diff(end) + 1;
    if count > MAX_RANGE {
        return Err(format!(
            "range `[{inner}]` in `{text}` expands to {count} values; at most {MAX_RANGE} are allowed"
        ));
    }
    let width = if first.len() > 1 && first.starts_with('0') {
        first.len()
    } else {
        0
    };
    let numbers: Box<dyn Iterator<Item = u64>> = if start <= end {
        Box::new(start..=end)
    } else {
        Box::new((end..=start).rev())
    };
    Ok(Some(
        numbers
            .map(|number| format!("{prefix}{number:0width$}{suffix}"))
            .collect(),
    ))
}

/// Whether `text` holds a `[digits:digits]` range.
fn is_numeric_range(text: &str) -> bool {
    let Some((_, rest)) = text.split_once('[') else {
        return false;
    };
    let inner = rest.split(']').next().unwrap_or("");
    inner.split_once(':').is_some_and(|(first, last)| {
        [first, last]
            .iter()
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()))
    })
}

/// The (name, address) pairs of one host entry: its name range with its address range (equal
/// lengths) or its plain address.
pub(super) fn expand_host(name: &str, address: &str) -> Result<Vec<(String, String)>, RangeError> {
    let names = expand(name).map_err(RangeError::Name)?;
    // An address in brackets that is not `[digits:digits]` (an IPv6 literal) is plain.
    let addresses = if is_numeric_range(address) {
        expand(address).map_err(RangeError::Address)?
    } else {
        None
    };
    match (names, addresses) {
        (None, None) => Ok(vec![(name.to_string(), address.to_string())]),
        (None, Some(addresses)) => Err(RangeError::Address(format!(
            "address range expands to {} addresses but the name `{name}` is not a range",
            addresses.len()
        ))),
        (Some(names), None) => Ok(names
            .into_iter()
            .map(|name| (name, address.to_string()))
            .collect()),
        (Some(names), Some(addresses)) => {
            if names.len() != addresses.len() {
                return Err(RangeError::Address(format!(
                    "address range expands to {} addresses but the name range to {} names; they must have equal lengths",
                    addresses.len(),
                    names.len()
                )));
            }
            Ok(names.into_iter().zip(addresses).collect())
        }
    }
}

/// Which value of a host entry a range problem is about.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum RangeError {
    Name(String),
    Address(String),
}

impl super::location::Parser<'_> {
    /// The host entries with their ranges expanded, each with its index in the file (names and
    /// addresses keep the span of the range they came from, so errors point at it).
    pub(super) fn expand_ranges(
        &self,
        raw: Vec<toml::Spanned<super::raw::RawHost>>,
    ) -> Result<Vec<(usize, super::raw::RawHost)>, super::location::InventoryError> {
        let mut expanded = Vec::with_capacity(raw.len());
        for (index, entry) in raw.into_iter().enumerate() {
            let entry = entry.into_inner();
            let (name_span, address_span) = (entry.name.span(), entry.address.span());
            let pairs =
                expand_host(entry.name.get_ref(), entry.address.get_ref()).map_err(|error| {
                    match error {
                        RangeError::Name(message) => {
                            self.error_at(&name_span, format!("hosts[{index}].name"), message)
                        }
                        RangeError::Address(message) => {
                            self.error_at(&address_span, format!("hosts[{index}].address"), message)
                        }
                    }
                })?;
            for (name, address) in pairs {
                let mut host = entry.clone();
                host.name = toml::Spanned::new(name_span.clone(), name);
                host.address = toml::Spanned::new(address_span.clone(), address);
                expanded.push((index, host));
            }
        }
        Ok(expanded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_expand_in_order_with_padding() {
        assert_eq!(expand("web1"), Ok(None));
        assert_eq!(
            expand("web[01:03]"),
            Ok(Some(vec!["web01".into(), "web02".into(), "web03".into()]))
        );
        assert_eq!(
            expand("10.0.1.[11:13]"),
            Ok(Some(vec![
                "10.0.1.11".into(),
                "10.0.1.12".into(),
                "10.0.1.13".into()
            ]))
        );
        assert_eq!(
            expand("db[3:1]-eu"),
            Ok(Some(vec![
                "db3-eu".into(),
                "db2-eu".into(),
                "db1-eu".into()
            ]))
        );
        assert_eq!(
            expand("web[08:10]"),
            Ok(Some(vec!["web08".into(), "web09".into(), "web10".into()]))
        );
        assert_eq!(expand("web[0:0]"), Ok(Some(vec!["web0".into()])));
    }

    #[test]
    fn bad_ranges_are_refused() {
        for bad in [
            "web[1:",
            "web1]",
            "web[1-3]",
            "web[a:c]",
            "web[:3]",
            "web[1:2][3:4]",
            "web[1:20000]",
            "web[-1:3]",
            "web[1234567890:1]",
        ] {
            assert!(expand(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_ranges_pair_names_with_addresses() {
        assert_eq!(
            expand_host("web[1:2]", "10.0.0.[5:6]"),
            Ok(vec![
                ("web1".into(), "10.0.0.5".into()),
                ("web2".into(), "10.0.0.6".into())
            ])
        );
        assert_eq!(
            expand_host("web[1:2]", "127.0.0.1"),
            Ok(vec![
                ("web1".into(), "127.0.0.1".into()),
                ("web2".into(), "127.0.0.1".into())
            ])
        );
        assert!(matches!(
            expand_host("web[1:3]", "10.0.0.[5:6]"),
            Err(RangeError::Address(message)) if message.contains("equal lengths")
        ));
        assert!(matches!(
            expand_host("web1", "10.0.0.[5:6]"),
            Err(RangeError::Address(_))
        ));
        assert!(matches!(
            expand_host("web[1:", "x"),
            Err(RangeError::Name(_))
        ));
        assert_eq!(
            expand_host("six", "[::1]"),
            Ok(vec![("six".into(), "[::1]".into())])
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any text: an error or an expansion, never a panic; an expansion has the stated
        /// number of values, in order, each with the prefix and suffix.
        #[test]
        fn any_text_expands_or_is_refused(text in any::<String>()) {
            let _ = expand(&text);
            let _ = expand_host(&text, &text);
        }

        #[test]
        fn well_formed_ranges_expand_in_order(
            prefix in "[a-z]{0,5}",
            suffix in "[a-z.]{0,5}",
            start in 0u64..500,
            length in 1u64..50,
            padded in any::<bool>(),
        ) {
            let end = start + length - 1;
            let first = if padded { format!("{start:04}") } else { start.to_string() };
            let text = format!("{prefix}[{first}:{end}]{suffix}");
            let values = expand(&text).expect("valid").expect("a range");
            prop_assert_eq!(values.len() as u64, length);
            for (offset, value) in values.iter().enumerate() {
                let number = start + offset as u64;
                let expected = if padded && first.starts_with('0') && first.len() > 1 {
                    format!("{prefix}{number:04}{suffix}")
                } else {
                    format!("{prefix}{number}{suffix}")
                };
                prop_assert_eq!(value, &expected);
            }
        }
    }
}
