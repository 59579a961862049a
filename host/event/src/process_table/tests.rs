//! Process-table tests. The hostile ones build their own streams (an attacker controls
//! command lines, file names and the pattern of its own fork/exec/exit events), sized to
//! prove each bound in seconds, and assert on counts and structure, never on timings.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::*;
use crate::model::{self, CS_ADHOC, CS_SIGNED};
use crate::parse_line;

type K = (i32, i32);

fn token((pid, pidversion): K) -> AuditToken {
    AuditToken {
        pid,
        pidversion,
        ..AuditToken::default()
    }
}

/// A signed platform image; one parsed template, cloned (the hostile tests build millions).
fn process(key: K, parent: Option<K>, path: &str) -> Process {
    static TEMPLATE: std::sync::LazyLock<Process> = std::sync::LazyLock::new(|| {
        serde_json::from_value(serde_json::json!({
            "audit_token": {"pid": 0, "pidversion": 0},
            "executable": {"path": ""},
            "codesigning_flags": CS_SIGNED,
            "is_platform_binary": true,
        }))
        .unwrap()
    });
    let mut p = TEMPLATE.clone();
    p.audit_token = token(key);
    p.executable.path = path.to_owned();
    p.parent_audit_token = parent.map(token);
    p.ppid = parent.map_or(0, |k| k.0);
    p
}

fn message(process: Process, event: EventPayload) -> Message {
    Message {
        schema_version: Some(1),
        version: 10,
        time: String::new(),
        mach_time: None,
        event_type: None,
        seq_num: None,
        global_seq_num: None,
        action_type: None,
        process,
        event,
        raw: Arc::from(""),
    }
}

/// `actor` (whose own parent is `actor_parent`) forks `child`.
fn fork_of(actor: &Process, child: K) -> Message {
    let child = process(child, Some(actor.audit_token.key()), &actor.executable.path);
    message(
        actor.clone(),
        EventPayload::Fork(Box::new(model::Fork { child })),
    )
}

/// `actor` execs `target` (same pid, next pidversion, same parent) with `args`.
fn exec_of(actor: &Process, target: Process, args: Vec<String>) -> Message {
    message(
        actor.clone(),
        EventPayload::Exec(Box::new(model::Exec {
            target,
            args,
            cwd: None,
            script: None,
            dyld_exec_path: None,
            image_cputype: None,
            image_cpusubtype: None,
        })),
    )
}

fn exit_of(actor: &Process) -> Message {
    message(actor.clone(), EventPayload::Exit(model::Exit { stat: 0 }))
}

/// A fork of `parent` into `pid` and an exec of the child into `path`: the two events and
/// the new image.
fn spawn(
    table: &mut ProcessTable,
    parent: &Process,
    pid: i32,
    path: &str,
    args: &[&str],
) -> Process {
    table.observe(&fork_of(parent, (pid, pid * 10)));
    let forked = process(
        (pid, pid * 10),
        Some(parent.audit_token.key()),
        &parent.executable.path,
    );
    let image = process((pid, pid * 10 + 1), Some(parent.audit_token.key()), path);
    table.observe(&exec_of(
        &forked,
        image.clone(),
        args.iter().map(|a| (*a).to_owned()).collect(),
    ));
    image
}

fn pids(chain: &[Arc<Process>]) -> Vec<K> {
    chain.iter().map(|p| p.audit_token.key()).collect()
}

/// Every structural invariant, by a full scan (tests only): the running byte count, the
/// pin counts, and one order slot per image in the set its state calls for.
fn check(table: &ProcessTable) {
    assert!(table.len() <= table.capacity, "count cap");
    assert!(table.bytes <= table.byte_budget, "byte budget");
    let (ended, leaves, ancestors) = table.order.lens();
    assert_eq!(
        ended + leaves + ancestors,
        table.len(),
        "one order slot per image"
    );
    let mut bytes = 0;
    let mut pins: HashMap<K, usize> = HashMap::new();
    for (key, e) in &table.entries {
        bytes += e.bytes;
        assert_eq!(e.class, e.class_now(), "{key:?} in the wrong set");
        assert_eq!(
            table.order.get(e.class, e.stamp()),
            Some(*key),
            "{key:?} slot"
        );
        if let Some((parent, uid)) = e.up {
            assert!(e.needed(), "{key:?} counts in a parent but is not needed");
            if table.entries.get(&parent).is_some_and(|p| p.uid == uid) {
                *pins.entry(parent).or_default() += 1;
            }
        }
        let expected = image::process_bytes(&e.process)
            + ENTRY_OVERHEAD
            + e.argv.as_ref().map_or(0, Argv::bytes);
        assert_eq!(e.bytes, expected, "{key:?} bytes");
    }
    for (key, e) in &table.entries {
        assert_eq!(e.pins, pins.get(key).copied().unwrap_or(0), "{key:?} pins");
    }
    assert_eq!(bytes, table.bytes, "running byte count");
}

// Lines parsed from JSON, as the stream writes them.

fn fork_line(parent: K, child: K) -> Message {
    let line = format!(
        r#"{{"version":10,"time":"t","process":{{"audit_token":{{"pid":{},"pidversion":{}}},"executable":{{"path":"/bin/sh"}}}},"event":{{"fork":{{"child":{{"audit_token":{{"pid":{},"pidversion":{}}},"parent_audit_token":{{"pid":{},"pidversion":{}}},"executable":{{"path":"/bin/sh"}}}}}}}}}}"#,
        parent.0, parent.1, child.0, child.1, parent.0, parent.1
    );
    parse_line(line.as_bytes(), 1 << 20).unwrap()
}

fn exit_line(who: K) -> Message {
    let line = format!(
        r#"{{"version":10,"time":"t","process":{{"audit_token":{{"pid":{},"pidversion":{}}},"executable":{{"path":"/bin/sh"}}}},"event":{{"exit":{{"stat":0}}}}}}"#,
        who.0, who.1
    );
    parse_line(line.as_bytes(), 1 << 20).unwrap()
}

#[test]
fn capacity_is_a_hard_bound_and_exited_images_go_first() {
    let mut table = ProcessTable::new(4);
    table.observe(&fork_line((1, 1), (2, 2)));
    table.observe(&fork_line((2, 2), (3, 3)));
    table.observe(&exit_line((3, 3)));
    assert_eq!(table.len(), 3);
    table.observe(&fork_line((2, 2), (4, 4)));
    table.observe(&fork_line((2, 2), (5, 5)));
    assert_eq!(table.len(), 4);
    let t = |pid| token((pid, pid));
    assert!(
        table.get(&t(3)).is_none(),
        "the exited image was evicted first"
    );
    assert!(table.get(&t(1)).is_some() && table.get(&t(5)).is_some());
    for i in 10..1000 {
        table.observe(&fork_line((2, 2), (i, i)));
        check(&table);
    }
    assert_eq!(table.len(), 4);
    assert!(table.get(&t(1)).is_some() && table.get(&t(2)).is_some());
}

#[test]
fn exited_images_expire_after_the_grace() {
    let mut table = ProcessTable::new(100).with_exit_grace(3);
    let t = |pid| token((pid, pid));
    table.observe(&fork_line((1, 1), (2, 2)));
    table.observe(&exit_line((2, 2)));
    assert!(table.has_exited(&t(2)));
    for i in 10..13 {
        table.observe(&fork_line((1, 1), (i, i)));
    }
    assert!(table.get(&t(2)).is_some(), "still within the grace");
    table.observe(&fork_line((1, 1), (20, 20)));
    assert!(table.get(&t(2)).is_none(), "expired");
    assert!(table.get(&t(12)).is_some(), "live images never expire");
    check(&table);
}

#[test]
fn ancestry_stops_at_unknown_parents_depth_and_cycles() {
    let mut table = ProcessTable::default();
    table.observe(&fork_line((1, 1), (2, 2)));
    table.observe(&fork_line((2, 2), (3, 3)));
    table.observe(&fork_line((3, 3), (4, 4)));
    let t = |pid| token((pid, pid));
    assert_eq!(pids(&table.ancestors(&t(4), 32)), [(3, 3), (2, 2), (1, 1)]);
    assert_eq!(table.ancestors(&t(4), 2).len(), 2);
    // A cycle (corrupt input) terminates, and is not counted as lineage.
    table.observe(&fork_line((4, 4), (1, 1)));
    assert!(table.ancestors(&t(4), 32).len() <= 4);
    check(&table);
    for pid in 1..=4 {
        table.observe(&exit_line((pid, pid)));
    }
    check(&table);
    assert_eq!(table.order.lens(), (4, 0, 0), "a cycle pins nothing");
}

// Bytes per image.

#[test]
fn argv_keeps_the_first_arguments_within_the_caps_and_the_true_count() {
    // One 1 MiB argument of two-byte chars, cut on a char boundary.
    let huge = vec!["é".repeat(512 * 1024)];
    let argv = Argv::new(&huge);
    assert_eq!((argv.kept.len(), argv.total, argv.truncated), (1, 1, true));
    assert!(argv.kept[0].len() <= MAX_ARGS_BYTES && argv.kept[0].len() > MAX_ARGS_BYTES - 2);
    assert!(argv.kept[0].chars().all(|c| c == 'é'));

    // Many arguments: the first MAX_ARGS kept.
    let many: Vec<String> = (0..100_000).map(|i| i.to_string()).collect();
    let argv = Argv::new(&many);
    assert_eq!(
        (argv.kept.len(), argv.total, argv.truncated),
        (MAX_ARGS, 100_000, true)
    );
    assert_eq!(argv.kept[..], many[..MAX_ARGS]);

    // 16 arguments of 64 KiB: the first kept whole, the second cut to nothing, dropped.
    let wide: Vec<String> = (0..16).map(|_| "A".repeat(MAX_ARGS_BYTES)).collect();
    let argv = Argv::new(&wide);
    assert_eq!((argv.kept.len(), argv.total, argv.truncated), (1, 16, true));

    // A real command line is kept as it is.
    let real: Vec<String> = ["curl", "-fsSL", "https://example.com/x"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let argv = Argv::new(&real);
    assert_eq!(
        (&argv.kept[..], argv.total, argv.truncated),
        (&real[..], 3, false)
    );
}

#[test]
fn paths_and_identity_strings_are_capped() {
    let big = "x".repeat(1 << 20);
    let mut p = process((10, 10), Some((1, 1)), &format!("/tmp/{big}"));
    p.signing_id = Some(big.clone());
    p.team_id = Some(big.clone());
    p.cdhash = Some(big.clone());
    p.start_time = Some(big.clone());
    p.tty = Some(model::File {
        path: format!("/dev/{big}"),
        path_truncated: false,
        stat: None,
    });
    p.executable.stat = Some(model::Stat {
        st_mtimespec: Some(big.clone()),
        st_birthtimespec: Some(big.clone()),
        st_ino: Some(7),
        ..model::Stat::default()
    });
    let mut table = ProcessTable::default();
    table.observe(&exit_of(&p));
    let held = table.get(&token((10, 10))).unwrap();
    assert!(held.executable.path.starts_with("/tmp/xxx"));
    assert_eq!(held.executable.path.len(), MAX_PATH_BYTES);
    assert!(held.executable.path_truncated, "a cut path says so");
    assert_eq!(held.tty.as_ref().unwrap().path.len(), MAX_PATH_BYTES);
    for s in [
        &held.signing_id,
        &held.team_id,
        &held.cdhash,
        &held.start_time,
    ] {
        assert_eq!(s.as_ref().unwrap().len(), MAX_FIELD_BYTES);
    }
    let stat = held.executable.stat.as_ref().unwrap();
    assert_eq!(stat.st_ino, Some(7));
    assert_eq!(stat.st_mtimespec.as_ref().unwrap().len(), MAX_FIELD_BYTES);
    assert!(table.accounted_bytes() <= MAX_IMAGE_BYTES);
    check(&table);
}

/// 1,000 live images exec'd with ~1 MiB of argv each: the old table held all of it
/// (~1.05 GB accounted); now each image keeps at most MAX_ARGS_BYTES of argv.
#[test]
fn a_thousand_megabyte_command_lines_stay_within_the_per_image_caps() {
    let mut table = ProcessTable::default();
    let root = process((1, 1), None, "/sbin/launchd");
    let args: Vec<String> = (0..16)
        .map(|i| format!("{i:02}{}", "A".repeat(64 * 1024)))
        .collect();
    for i in 0..1_000 {
        let pid = 1_000 + i;
        let forked = process((pid, 1), Some((1, 1)), "/bin/sh");
        let target = process((pid, 2), Some((1, 1)), "/tmp/x");
        table.observe(&fork_of(&root, (pid, 1)));
        table.observe(&exec_of(&forked, target, args.clone()));
    }
    check(&table);
    let bound = table.len() * MAX_IMAGE_BYTES;
    eprintln!(
        "1,000 images x {} bytes of argv: {} images, {} bytes accounted, {} approx",
        args.iter().map(String::len).sum::<usize>(),
        table.len(),
        table.accounted_bytes(),
        table.approx_bytes()
    );
    assert!(table.accounted_bytes() <= bound && table.approx_bytes() <= 2 * bound);
    assert!(
        table.approx_bytes() < 100 << 20,
        "not the ~1 GB of argv it was fed"
    );
    let argv = table.argv(&token((1_500, 2))).unwrap();
    assert_eq!(argv.total, 16, "the true count is kept");
    assert!(argv.truncated);
    assert!(argv.kept.iter().map(String::len).sum::<usize>() <= MAX_ARGS_BYTES);
    assert_eq!(table.args_total(&token((1_500, 2))), Some(16));
    assert_eq!(table.evictions(), Evictions::default(), "no pressure yet");
}

/// The byte budget holds after every event: images padded to the per-image caps hit it
/// long before the count cap, images with 3 KiB of argv hit it near the count cap, smaller
/// ones meet the count cap first; a small budget holds too.
#[test]
fn the_byte_budget_holds_near_the_count_cap() {
    for (capacity, budget, images, argv_bytes, path_bytes) in [
        (
            DEFAULT_CAPACITY,
            DEFAULT_BYTE_BUDGET,
            10_000,
            1 << 20,
            8 << 10,
        ),
        (DEFAULT_CAPACITY, DEFAULT_BYTE_BUDGET, 70_000, 3 << 10, 16),
        (DEFAULT_CAPACITY, DEFAULT_BYTE_BUDGET, 70_000, 1 << 10, 16),
        (DEFAULT_CAPACITY, 4 << 20, 5_000, 1 << 20, 8 << 10),
    ] {
        let args: Vec<String> = (0..16).map(|_| "B".repeat(argv_bytes / 16)).collect();
        let path = format!("/tmp/{}", "p".repeat(path_bytes));
        let mut table = ProcessTable::new(capacity).with_byte_budget(budget);
        let root = process((1, 1), None, "/sbin/launchd");
        let mut exec = exec_of(
            &process((2, 1), Some((1, 1)), "/bin/sh"),
            process((2, 2), Some((1, 1)), &path),
            args,
        );
        let mut most = 0;
        for i in 0..images {
            let pid = 2 + i;
            table.observe(&fork_of(&root, (pid, 1)));
            exec.process.audit_token = token((pid, 1));
            if let EventPayload::Exec(e) = &mut exec.event {
                e.target.audit_token = token((pid, 2));
            }
            table.observe(&exec);
            assert!(table.accounted_bytes() <= budget && table.len() <= capacity);
            most = most.max(table.accounted_bytes());
        }
        check(&table);
        eprintln!(
            "{images} images of {argv_bytes} argv bytes, budget {budget}: {} held, \
             at most {most} bytes, {:?}",
            table.len(),
            table.evictions()
        );
        if argv_bytes == 3 << 10 {
            assert!(table.len() > capacity / 2, "near the count cap");
        }
        if argv_bytes == 1 << 10 {
            assert_eq!(table.len(), capacity, "the count cap binds first");
        }
        assert!(table.evictions().leaves > 0, "a bound bit");
        assert!(
            table.get(&token((1, 1))).is_some(),
            "the common ancestor stays"
        );
        assert_eq!(table.evictions().ancestors, 0);
    }
}

// Lineage.

/// The attacker's chain launchd → sshd → zsh → ad-hoc dropper in /tmp → sysadminctl, then
/// one pid exec'ing itself 50,000 times with a capacity of 1,024: the old table evicted the
/// chain (oldest first, and an exec never retired the image it replaced); now the retired
/// images go first and the attacker's next step still has its whole ancestry.
#[test]
fn a_self_exec_loop_does_not_evict_the_attackers_lineage() {
    let mut table = ProcessTable::new(1_024);
    let launchd = process((1, 1), None, "/sbin/launchd");
    let sshd = spawn(&mut table, &launchd, 100, "/usr/sbin/sshd", &["sshd"]);
    let zsh = spawn(&mut table, &sshd, 200, "/bin/zsh", &["-zsh"]);
    let mut dropper = process((300, 3001), Some(zsh.audit_token.key()), "/tmp/.x/dropper");
    dropper.is_platform_binary = false;
    dropper.codesigning_flags = CS_SIGNED | CS_ADHOC;
    table.observe(&fork_of(&zsh, (300, 3000)));
    table.observe(&exec_of(
        &process((300, 3000), Some(zsh.audit_token.key()), "/bin/zsh"),
        dropper.clone(),
        vec!["/tmp/.x/dropper".into()],
    ));
    let admin = spawn(
        &mut table,
        &dropper,
        400,
        "/usr/sbin/sysadminctl",
        &["sysadminctl", "-addUser", "x"],
    );
    table.observe(&exit_of(&admin));

    // One pid exec'ing itself between the attacker's steps.
    let mut image = spawn(&mut table, &launchd, 7, "/bin/sh", &["sh"]);
    for v in 0..50_000 {
        let next = process((7, 100 + v), Some((1, 1)), "/bin/sh");
        table.observe(&exec_of(
            &image,
            next.clone(),
            vec!["sh".into(), v.to_string()],
        ));
        image = next;
        if v % 5_000 == 0 {
            check(&table);
        }
    }
    check(&table);
    assert!(table.is_retired(&token((7, 100))) || table.get(&token((7, 100))).is_none());

    let step = spawn(
        &mut table,
        &dropper,
        500,
        "/usr/bin/dscl",
        &["dscl", ".", "-create"],
    );
    let chain = table.ancestors(&step.audit_token, MAX_ANCESTRY);
    assert_eq!(
        pids(&chain),
        [(300, 3001), (200, 2001), (100, 1001), (1, 1)],
        "dropper, zsh, sshd, launchd"
    );
    assert_eq!(chain[0].signer(), model::Signer::Adhoc);
    assert_eq!(table.evictions().ancestors, 0);
    assert_eq!(
        table.evictions().leaves,
        0,
        "only retired images were evicted"
    );
    assert!(table.len() <= 1_024);
}

/// Children forked before an exec name the pre-exec image as their parent: it is retired
/// but kept while they live, whatever churns; released once they exit.
#[test]
fn a_retired_image_stays_while_its_children_live() {
    let mut table = ProcessTable::new(64).with_exit_grace(100);
    let launchd = process((1, 1), None, "/sbin/launchd");
    let shell = spawn(&mut table, &launchd, 20, "/bin/zsh", &["zsh"]);
    let child = process((21, 210), Some(shell.audit_token.key()), "/bin/zsh");
    table.observe(&fork_of(&shell, (21, 210)));
    // The shell execs (into a new image of pid 20): its old image is retired.
    let replaced = process((20, 202), Some((1, 1)), "/usr/bin/python3");
    table.observe(&exec_of(&shell, replaced.clone(), vec!["python3".into()]));
    assert!(table.is_retired(&shell.audit_token));
    for i in 0..10_000 {
        let churn = spawn(&mut table, &launchd, 1_000 + i, "/usr/bin/true", &["true"]);
        table.observe(&exit_of(&churn));
    }
    check(&table);
    assert_eq!(
        pids(&table.ancestors(&child.audit_token, 8)),
        [(20, 201), (1, 1)],
        "the retired shell outlives its grace while its child lives"
    );
    table.observe(&exit_of(&child));
    for i in 0..200 {
        table.observe(&fork_of(&launchd, (50_000 + i, 1)));
        table.observe(&exit_of(&process((50_000 + i, 1), Some((1, 1)), "/bin/sh")));
    }
    check(&table);
    assert!(
        table.get(&shell.audit_token).is_none(),
        "released, then expired"
    );
    assert!(
        table.get(&replaced.audit_token).is_some(),
        "the live image stays"
    );
}

/// A chain whose middle exited (a double fork) is kept while the daemon at its end lives,
/// however many short-lived processes churn past it and however short the grace.
#[test]
fn a_live_descendant_keeps_its_exited_ancestors_under_churn() {
    let mut table = ProcessTable::new(256).with_exit_grace(100);
    let launchd = process((1, 1), None, "/sbin/launchd");
    let sshd = spawn(&mut table, &launchd, 100, "/usr/sbin/sshd", &["sshd"]);
    let zsh = spawn(&mut table, &sshd, 200, "/bin/zsh", &["-zsh"]);
    let dropper = spawn(&mut table, &zsh, 300, "/tmp/dropper", &["dropper"]);
    let daemon = process((600, 6000), Some(dropper.audit_token.key()), "/tmp/dropper");
    table.observe(&fork_of(&dropper, (600, 6000)));
    table.observe(&exit_of(&dropper));
    table.observe(&exit_of(&zsh));
    for i in 0..100_000 {
        let pid = 10_000 + (i % 20_000);
        let churn = spawn(&mut table, &launchd, pid, "/usr/bin/true", &["true"]);
        table.observe(&exit_of(&churn));
        if i % 10_000 == 0 {
            check(&table);
        }
    }
    check(&table);
    let chain = table.ancestors(&daemon.audit_token, MAX_ANCESTRY);
    assert_eq!(
        pids(&chain),
        [(300, 3001), (200, 2001), (100, 1001), (1, 1)],
        "dropper and zsh exited long ago, but the daemon lives"
    );
    assert!(table.has_exited(&dropper.audit_token));
    assert_eq!(table.evictions().ancestors, 0);
    assert_eq!(table.evictions().leaves, 0);

    // Once the daemon exits, nothing holds the chain's exited part: it expires.
    table.observe(&exit_of(&daemon));
    for i in 0..200 {
        table.observe(&fork_of(&launchd, (90_000 + i, 1)));
    }
    check(&table);
    assert!(table.get(&dropper.audit_token).is_none());
    assert!(table.get(&sshd.audit_token).is_some(), "live sshd stays");
}

/// A lineage the kernel updates after an exec (a child seen again names its parent's new
/// image) moves its pin from the retired image to the new one.
#[test]
fn a_parent_seen_again_under_its_new_image_moves_the_pin() {
    let mut table = ProcessTable::new(64).with_exit_grace(10);
    let launchd = process((1, 1), None, "/sbin/launchd");
    let shell = spawn(&mut table, &launchd, 20, "/bin/zsh", &["zsh"]);
    table.observe(&fork_of(&shell, (21, 210)));
    let replaced = process((20, 202), Some((1, 1)), "/usr/bin/python3");
    table.observe(&exec_of(&shell, replaced.clone(), vec!["python3".into()]));
    assert_eq!(table.entries[&shell.audit_token.key()].pins, 1);
    let child = process((21, 210), Some(replaced.audit_token.key()), "/bin/zsh");
    table.observe(&message(child.clone(), EventPayload::CsInvalidated));
    check(&table);
    assert_eq!(table.entries[&shell.audit_token.key()].pins, 0);
    assert_eq!(table.entries[&replaced.audit_token.key()].pins, 1);
    for i in 0..20 {
        table.observe(&fork_of(&launchd, (900 + i, 1)));
    }
    assert!(
        table.get(&shell.audit_token).is_none(),
        "the retired image expired"
    );
    assert_eq!(
        pids(&table.ancestors(&child.audit_token, 8)),
        [(20, 202), (1, 1)]
    );
    check(&table);
}

/// The table starts mid-stream: a child is seen before its parent. Seen again once the
/// parent is held, the child counts in it, so the parent outlives its exit and grace.
#[test]
fn a_child_seen_before_its_parent_links_when_seen_again() {
    let mut table = ProcessTable::new(64).with_exit_grace(10);
    let shell = process((20, 200), Some((1, 1)), "/bin/zsh");
    let child = process((21, 210), Some((20, 200)), "/tmp/implant");
    table.observe(&message(child.clone(), EventPayload::CsInvalidated));
    table.observe(&message(shell.clone(), EventPayload::CsInvalidated));
    assert_eq!(table.entries[&(20, 200)].pins, 0, "not linked yet");
    table.observe(&message(child.clone(), EventPayload::CsInvalidated));
    assert_eq!(table.entries[&(20, 200)].pins, 1);
    table.observe(&exit_of(&shell));
    for i in 0..100 {
        let churn = process((1_000 + i, 1), Some((1, 1)), "/usr/bin/true");
        table.observe(&fork_of(
            &process((1, 1), None, "/sbin/launchd"),
            (1_000 + i, 1),
        ));
        table.observe(&exit_of(&churn));
    }
    check(&table);
    assert_eq!(
        pids(&table.ancestors(&child.audit_token, 8)),
        [(20, 200), (1, 1)]
    );
}

/// Fork bombs of live images: wide (one parent, 100,000 live children with padded paths)
/// and deep (each child forks the next and stays). Neither cap is ever exceeded; in the
/// deep one only ancestors are left to evict, so they go, oldest first.
#[test]
fn fork_bombs_of_live_images_respect_both_caps() {
    let budget = 1 << 20;
    let path = format!("/tmp/{}", "w".repeat(5_000));
    let mut wide = ProcessTable::new(1_024).with_byte_budget(budget);
    let root = process((1, 1), None, &path);
    for i in 0..100_000 {
        wide.observe(&fork_of(&root, (2 + i, 1)));
        assert!(wide.len() <= 1_024 && wide.accounted_bytes() <= budget);
    }
    check(&wide);
    assert!(
        wide.get(&token((1, 1))).is_some(),
        "the bomb's parent is an ancestor"
    );
    assert!(
        wide.get(&token((100_001, 1))).is_some(),
        "the newest child stays"
    );
    assert!(wide.evictions().leaves > 0 && wide.evictions().ancestors == 0);

    let mut deep = ProcessTable::new(1_024).with_byte_budget(budget);
    let mut parent = root;
    for i in 0..100_000 {
        let msg = fork_of(&parent, (2 + i, 1));
        deep.observe(&msg);
        let EventPayload::Fork(f) = msg.event else {
            unreachable!()
        };
        parent = f.child;
        assert!(deep.len() <= 1_024 && deep.accounted_bytes() <= budget);
        if i % 10_000 == 0 {
            check(&deep);
        }
    }
    check(&deep);
    assert!(
        deep.evictions().ancestors > 0,
        "ancestors went, as a last resort"
    );
    assert_eq!(
        deep.ancestors(&parent.audit_token, MAX_ANCESTRY).len(),
        MAX_ANCESTRY,
        "the newest part of the chain is kept"
    );
    assert!(
        deep.get(&token((1, 1))).is_none(),
        "the oldest ancestor went first"
    );
}

/// The same stream replayed three times (a recording fed twice reuses audit tokens), and
/// one fork/exit pair repeated 100,000 times: the bookkeeping holds one slot per image,
/// never more.
#[test]
fn repeated_tokens_keep_the_bookkeeping_bounded() {
    let launchd = process((1, 1), None, "/sbin/launchd");
    let mut stream = Vec::new();
    for i in 0..3_000 {
        let pid = 100 + i;
        stream.push(fork_of(&launchd, (pid, 1)));
        let forked = process((pid, 1), Some((1, 1)), "/bin/sh");
        let image = process((pid, 2), Some((1, 1)), "/usr/bin/true");
        stream.push(exec_of(&forked, image.clone(), vec!["true".into()]));
        if i % 3 != 0 {
            stream.push(exit_of(&image));
        }
    }
    let mut table = ProcessTable::new(1_024);
    for _ in 0..3 {
        for msg in &stream {
            table.observe(msg);
            let (ended, leaves, ancestors) = table.order.lens();
            assert_eq!(ended + leaves + ancestors, table.len());
            assert!(table.len() <= 1_024);
        }
        check(&table);
    }

    let mut table = ProcessTable::new(1_024);
    let child = process((5, 5), Some((1, 1)), "/bin/sh");
    for _ in 0..100_000 {
        table.observe(&fork_of(&launchd, (5, 5)));
        table.observe(&exit_of(&child));
    }
    check(&table);
    assert_eq!(table.len(), 2);
    assert_eq!(table.order.lens(), (1, 1, 0), "the exited child, launchd");
}

/// Descendants come breadth first, stop at the cap, and survive a parent cycle an
/// attacker's stream could describe; `live` leaves out what exited or was replaced.
#[test]
fn descendants_and_live_images() {
    let launchd = process((1, 1), None, "/sbin/launchd");
    let shell = process((10, 1), Some((1, 1)), "/bin/zsh");
    let payload = process((20, 1), Some((10, 1)), "/tmp/payload");
    let child_a = process((30, 1), Some((20, 1)), "/bin/sh");
    let child_b = process((31, 1), Some((20, 1)), "/usr/bin/curl");
    let grandchild = process((40, 1), Some((30, 1)), "/usr/bin/security");
    let mut table = ProcessTable::default();
    for p in [&launchd, &shell, &payload, &child_a, &child_b, &grandchild] {
        table.observe(&exit_of(p));
    }
    // `exit_of` marked each exited: sight them again as live through a fork of each.
    let mut table2 = ProcessTable::default();
    table2.observe(&fork_of(&launchd, (10, 1)));
    for (parent, child) in [
        (&shell, (20, 1)),
        (&payload, (30, 1)),
        (&payload, (31, 1)),
        (&child_a, (40, 1)),
    ] {
        table2.observe(&fork_of(parent, child));
    }
    let pids = |v: Vec<std::sync::Arc<crate::model::Process>>| -> Vec<i32> {
        v.iter().map(|p| p.audit_token.pid).collect()
    };
    assert_eq!(
        pids(table2.descendants(&payload.audit_token, 100)),
        [30, 31, 40]
    );
    assert_eq!(pids(table2.descendants(&payload.audit_token, 2)), [30, 31]);
    assert_eq!(
        pids(table2.descendants(&grandchild.audit_token, 100)),
        [] as [i32; 0]
    );
    assert!(table2.live().iter().any(|p| p.audit_token.pid == 40));
    table2.observe(&exit_of(&grandchild));
    assert!(!table2.live().iter().any(|p| p.audit_token.pid == 40));
    assert_eq!(table.live().len(), 0, "every image exited");
}
