//! Fuzzes the eslogger line parser and the process table with arbitrary bytes: any input
//! must parse or fail with a classified error, never panic, and the table must stay
//! within its capacity.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_event::{ProcessTable, parse_line};

fuzz_target!(|data: &[u8]| {
    let mut table = ProcessTable::new(64);
    for line in data.split(|&b| b == b'\n') {
        match parse_line(line, 1 << 20) {
            Ok(msg) => {
                let _ = msg.event.kind();
                let _ = msg.process.signer();
                let _ = msg.process.is_shell();
                if let ward_event::EventPayload::Exit(exit) = &msg.event {
                    let _ = (exit.exit_code(), exit.signal());
                }
                table.observe(&msg);
                let _ = table.ancestors(&msg.process.audit_token, 32);
                assert!(table.len() <= 64);
            }
            Err(e) => {
                let _ = e.reason();
            }
        }
    }
});
