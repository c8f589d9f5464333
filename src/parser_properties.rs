//! Property tests for the parsers of host output in `remote` (remote output is untrusted): the
//! facts script's output, the release scan, release-log lines, lock holder lines, history
//! lines and the live manifest after a push's lock facts. Each property states what holds for
//! any input (no panic, errors instead) and what round-trips for well-formed input. Only the
//! public API of `remote` is used.

use proptest::prelude::*;

use crate::inventory::Version;
use crate::remote::history::{self, HistoryRecord};
use crate::remote::scan;
use crate::remote::state::LockHolder;
use crate::remote::state::{self, LogAction, LogEntry};

/// Valid versions: 1–128 characters from `A-Z a-z 0-9 . _ + -`, starting with a letter or digit.
fn version() -> impl Strategy<Value = Version> {
    "[A-Za-z0-9][A-Za-z0-9._+-]{0,127}"
        .prop_map(|text| Version::parse(&text).expect("the pattern yields valid versions"))
}

fn log_entry() -> impl Strategy<Value = LogEntry> {
    let action = prop_oneof![
        Just(LogAction::Stage),
        Just(LogAction::Push),
        Just(LogAction::Rollback),
    ];
    (
        any::<u64>(),
        action,
        proptest::option::of(version()),
        version(),
    )
        .prop_map(|(time, action, from, to)| LogEntry {
            time,
            action,
            from,
            to,
        })
}

/// Lines that look like the facts script's: a known tag (or not) and arbitrary text.
fn facts_line() -> impl Strategy<Value = String> {
    let tag = prop_oneof![
        Just("df"),
        Just("base"),
        Just("current"),
        Just("release"),
        Just("log"),
        Just("lock"),
        Just("staging"),
        Just(""),
        Just("bogus"),
    ];
    (tag, any::<String>()).prop_map(|(tag, rest)| format!("{tag} {rest}"))
}

/// One record, built from JSON so that fields the struct gains later (all optional) read as
/// absent.
fn history_record() -> impl Strategy<Value = HistoryRecord> {
    let text = || any::<String>();
    let optional = || proptest::option::of(any::<String>());
    (
        (text(), text(), text(), text(), text()),
        (optional(), optional(), optional(), text(), optional()),
    )
        .prop_map(
            |((time, id, operator, action, service), (from, to, sha256, result, error))| {
                serde_json::from_value(serde_json::json!({
                    "time": time,
                    "id": id,
                    "operator": operator,
                    "action": action,
                    "service": service,
                    "from": from,
                    "to": to,
                    "sha256": sha256,
                    "result": result,
                    "error": error,
                }))
                .expect("every field of a history record is given")
            },
        )
}

fn history_line(record: &HistoryRecord) -> String {
    serde_json::to_string(record).expect("a history record serialises")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn facts_parse_never_panics_on_any_text(text in any::<String>()) {
        let _ = state::parse(&text);
    }

    /// A push's lock output: any text splits without a panic into facts that are its start
    /// and, at most, a manifest within the cap; what the script writes comes back whole.
    #[test]
    fn live_manifest_sections_never_panic_and_round_trip(
        facts in proptest::collection::vec(facts_line(), 1..6),
        after in any::<String>(),
        manifest in "[^\u{0}]{0,200}",
        cap in 0u64..256,
    ) {
        use crate::remote::scan::{RECORDED_MANIFEST, RecordedManifest, split_recorded_manifest};
        let facts = facts.join("\n") + "\n";
        let any = format!("{facts}{RECORDED_MANIFEST}{after}");
        let (head, live) = split_recorded_manifest(&any, cap);
        prop_assert!(any.starts_with(head));
        if let Some(RecordedManifest::Recorded(text)) = &live {
            prop_assert!(text.len() as u64 <= cap);
        }
        let written = format!("{facts}{RECORDED_MANIFEST}\n{manifest}\n");
        let (head, live) = split_recorded_manifest(&written, cap);
        if facts.contains(&format!("\n{RECORDED_MANIFEST}")) || facts.starts_with(RECORDED_MANIFEST) {
            return Ok(());
        }
        prop_assert_eq!(head, facts.as_str());
        let expected = (manifest.len() as u64 <= cap)
            .then(|| RecordedManifest::Recorded(manifest.clone()));
        prop_assert_eq!(live, expected);
    }

    #[test]
    fn facts_parse_never_panics_on_tagged_lines(
        lines in proptest::collection::vec(facts_line(), 0..12)
    ) {
        let _ = state::parse(&lines.join("\n"));
    }

    #[test]
    fn release_log_lines_never_panic_and_parse_to_what_they_print(line in "[^\n]*") {
        if let Ok(parsed) = state::parse(&format!("log {line}\n")) {
            prop_assert_eq!(parsed.log.len(), 1);
            let again = state::parse(&format!("log {}\n", state::log_line(&parsed.log[0])))
                .expect("a printed log line parses");
            prop_assert_eq!(again.log, parsed.log);
        }
    }

    #[test]
    fn release_log_lines_round_trip(entries in proptest::collection::vec(log_entry(), 0..6)) {
        let text: String = entries
            .iter()
            .map(|entry| format!("log {}\n", state::log_line(entry)))
            .collect();
        let parsed = state::parse(&text).expect("printed log lines parse");
        prop_assert_eq!(parsed.log, entries);
    }

    #[test]
    fn scan_parse_never_panics_on_any_bytes(bytes in any::<Vec<u8>>()) {
        let _ = scan::parse_scan(&bytes);
    }

    #[test]
    fn scan_parse_never_panics_on_scan_shaped_fields(
        fields in proptest::collection::vec(
            prop_oneof![
                Just(b"deploy-digests".to_vec()),
                Just(b"deploy-digest-lines".to_vec()),
                Just(format!("{} *./a\n{} *./b", "0".repeat(64), "1".repeat(64)).into_bytes()),
                Just(b"f 644 1".to_vec()),
                Just(b"d 755 0".to_vec()),
                Just(b"l 777 3".to_vec()),
                Just(b"./a".to_vec()),
                Just(format!("{}  ./a", "0".repeat(64)).into_bytes()),
                Just(Vec::new()),
                any::<Vec<u8>>(),
            ],
            0..16,
        )
    ) {
        let _ = scan::parse_scan(&fields.join(&0u8));
    }

    #[test]
    fn delta_identity_parses_never_panic_on_shaped_fields(
        fields in proptest::collection::vec(
            prop_oneof![
                Just(b"deploy-record".to_vec()),
                Just(b"deploy-base".to_vec()),
                Just(b"deploy-pruned".to_vec()),
                Just(b"deploy-relisted".to_vec()),
                Just(b"deploy-digest-lines".to_vec()),
                Just(b"deploy-digests".to_vec()),
                Just(b"stamp 1700000000.5000000000".to_vec()),
                Just(b"f 644 3 2049 12 1700000000.0000000000 1700000001.1234567890".to_vec()),
                Just(b"f 644 3 2049 12 -1.5 x".to_vec()),
                Just(b"d 755 4096 2049 13 1 1".to_vec()),
                Just(b"a/b".to_vec()),
                Just(Vec::new()),
                any::<Vec<u8>>(),
            ],
            0..16,
        )
    ) {
        let bytes = fields.join(&0u8);
        let _ = crate::remote::delta::parse_delta_output(&bytes);
        let _ = crate::remote::delta::parse_verify(&bytes);
    }

    #[test]
    fn delta_identity_listings_round_trip(
        records in proptest::collection::btree_map(
            "[a-z]{1,8}(/[a-z.]{1,8}){0,2}",
            (
                prop_oneof![Just('f'), Just('d'), Just('l')],
                0u32..0o10000,
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                (any::<u64>(), 0u32..1_000_000_000, 0u8..10),
                (any::<u64>(), 0u32..1_000_000_000, 0u8..10),
                "[ -~]{0,12}",
            ),
            0..24,
        ),
        stamp in (any::<u64>(), 0u32..1_000_000_000),
    ) {
        use crate::remote::delta::{Identity, parse_verify};
        // As `find -printf '%y %m %s %D %i %T@ %C@\0%P\0%l\0'` prints them: ten fraction
        // digits, of which the parser keeps nine.
        let mut output = format!("stamp {}.{:09}0\0", stamp.0, stamp.1);
        for (path, (kind, mode, size, device, inode, modified, changed, link)) in &records {
            output.push_str(&format!(
                "{kind} {mode:o} {size} {device} {inode} {}.{:09}{} {}.{:09}{}\0{path}\0{link}\0",
                modified.0, modified.1, modified.2, changed.0, changed.1, changed.2
            ));
        }
        output.push_str("deploy-digest-lines\0");
        let (listing, digests) = parse_verify(output.as_bytes()).expect("a well-formed listing parses");
        prop_assert_eq!(listing.stamp, Some(stamp));
        prop_assert!(digests.is_empty());
        let expected: Vec<(String, Identity)> = records
            .iter()
            .map(|(path, (kind, mode, size, device, inode, modified, changed, link))| {
                (
                    path.clone(),
                    Identity {
                        kind: *kind,
                        mode: *mode,
                        link: link.clone(),
                        device: *device,
                        inode: *inode,
                        size: *size,
                        modified: Some((modified.0, modified.1)),
                        changed: Some((changed.0, changed.1)),
                    },
                )
            })
            .collect();
        let parsed: Vec<(String, Identity)> = listing.entries.into_iter().collect();
        prop_assert_eq!(parsed, expected);
    }

    #[test]
    fn lock_holder_parse_never_panics(line in any::<String>(), alive in any::<bool>()) {
        let holder = LockHolder::parse(&line, alive);
        prop_assert_eq!(&holder.line, &line);
        prop_assert_eq!(holder.alive, alive);
        let _ = holder.describe();
    }

    #[test]
    fn lock_holder_fields_round_trip(
        pid in "[^ ]{1,12}",
        operator in "[^ ]{1,24}",
        run_id in "[^ ]{1,24}",
        since in any::<u64>(),
        boot_id in "[^ ]{1,36}",
        start in "[^ ]{1,12}",
        alive in any::<bool>(),
    ) {
        let line = format!("{pid} {operator} {run_id} {since} {boot_id} {start}");
        let holder = LockHolder::parse(&line, alive);
        prop_assert_eq!(&holder.line, &line);
        prop_assert_eq!(holder.pid, pid);
        prop_assert_eq!(holder.operator, operator);
        prop_assert_eq!(holder.run_id, run_id);
        prop_assert_eq!(holder.since, Some(since));
        prop_assert_eq!(holder.boot_id, Some(boot_id));
        prop_assert_eq!(holder.start, Some(start));
        prop_assert_eq!(holder.alive, alive);
    }

    #[test]
    fn lock_lines_of_the_facts_script_give_their_holder(
        fields in proptest::collection::vec("[!-~]{1,16}", 0..7),
        alive in any::<bool>(),
    ) {
        let holder = fields.join(" ");
        let state = if alive { "alive" } else { "dead" };
        let parsed = state::parse(&format!("lock {state} {holder}\n")).expect("a lock line parses");
        prop_assert_eq!(parsed.lock, Some(LockHolder::parse(&holder, alive)));
    }

    #[test]
    fn history_parse_never_panics_and_accounts_for_every_line(text in any::<String>()) {
        let (records, problems) = history::parse_history(&text);
        let lines = text.lines().filter(|line| !line.trim().is_empty()).count();
        prop_assert_eq!(records.len() + problems.len(), lines);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn history_records_round_trip_newest_first(
        records in proptest::collection::vec(history_record(), 0..6)
    ) {
        let text: String = records
            .iter()
            .map(|record| history_line(record) + "\n")
            .collect();
        let (parsed, problems) = history::parse_history(&text);
        prop_assert!(problems.is_empty(), "{problems:?}");
        let newest_first: Vec<HistoryRecord> = records.into_iter().rev().collect();
        prop_assert_eq!(parsed, newest_first);
    }

    /// A write cut short (a full disk) leaves a partial line; the next append lands on it.
    #[test]
    fn a_truncated_record_glued_to_the_next_is_one_problem(
        records in proptest::collection::vec(history_record(), 2..7),
        cut_at in any::<prop::sample::Index>(),
        glued_at in any::<prop::sample::Index>(),
    ) {
        let lines: Vec<String> = records.iter().map(history_line).collect();
        // Line `truncated` loses its end and its newline; line `truncated + 1` follows it.
        let truncated = glued_at.index(lines.len() - 1);
        let boundaries: Vec<usize> = lines[truncated]
            .char_indices()
            .map(|(position, _)| position)
            .skip(1)
            .collect();
        let cut = boundaries[cut_at.index(boundaries.len())];
        let mut text = String::new();
        for (index, line) in lines.iter().enumerate() {
            if index == truncated {
                text.push_str(&line[..cut]);
            } else {
                text.push_str(line);
                text.push('\n');
            }
        }
        let (parsed, problems) = history::parse_history(&text);
        prop_assert_eq!(problems.len(), 1, "{:?}", problems);
        let line_number = truncated + 1;
        prop_assert!(
            problems[0].contains(&format!("line {line_number} ")),
            "{} does not name line {}",
            problems[0],
            line_number
        );
        let expected: Vec<HistoryRecord> = records
            .into_iter()
            .enumerate()
            .filter(|(index, _)| *index != truncated && *index != truncated + 1)
            .map(|(_, record)| record)
            .rev()
            .collect();
        prop_assert_eq!(parsed, expected);
    }
}

proptest! {
    /// Any exec output from a host: read without panic, each stream bounded, and a failure
    /// always explained.
    #[test]
    fn exec_output_is_bounded_and_failures_explained(
        status in proptest::option::of(any::<u32>()),
        signal in proptest::option::of("[A-Z]{1,6}"),
        stdout in proptest::collection::vec(any::<u8>(), 0..2048),
        stderr in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        use crate::remote::exec::{EXEC_OUTPUT_LIMIT, ExecOutput};
        let output = ExecOutput::parse(status, signal.as_deref(), &stdout, &stderr, 5);
        prop_assert!(output.stdout.len() <= EXEC_OUTPUT_LIMIT + 64);
        prop_assert!(output.stderr.len() <= EXEC_OUTPUT_LIMIT + 64);
        prop_assert_eq!(output.succeeded(), status == Some(0));
        prop_assert_eq!(output.problem.is_some(), status != Some(0));
    }

    /// Any freeze line from a host: read without panic; a line the tool wrote round-trips.
    #[test]
    fn freeze_lines_read_and_round_trip(
        line in any::<String>(),
        operator in "[a-z]{1,8}@[a-z]{1,8}",
        since in any::<u64>(),
        message in "[ -~]{1,200}",
    ) {
        use crate::remote::freeze::{Freeze, freeze_line, parse_previous};
        let _ = Freeze::parse(&line);
        let _ = parse_previous(&line);
        let freeze = Freeze::parse(&freeze_line(&operator, since, &message));
        prop_assert_eq!(freeze.operator, operator);
        prop_assert_eq!(freeze.since, Some(since));
        prop_assert_eq!(freeze.message, message.trim().to_string());
    }
}

proptest! {
    /// Any `[services.NAME.files]` digest output: read or refused, never a panic; what the
    /// program prints reads back.
    #[test]
    fn file_digest_lines_read_or_are_refused(
        text in "(FILE [0-9]{1,2} (-|[0-9a-f]{64}|\\PC{0,8})\n){0,4}|\\PC{0,64}",
        count in 0usize..8,
        present in proptest::collection::vec(any::<bool>(), 0..8),
    ) {
        use crate::remote::files::parse_digests;
        let _ = parse_digests(&text, count);
        let digest = "a".repeat(64);
        let printed: String = present
            .iter()
            .enumerate()
            .map(|(index, here)| {
                format!("FILE {index} {}\n", if *here { digest.as_str() } else { "-" })
            })
            .collect();
        let read = parse_digests(&printed, present.len()).expect("the program's own output");
        prop_assert_eq!(
            read.iter().map(Option::is_some).collect::<Vec<_>>(),
            present
        );
    }
}
