//! Any text a client or a server could send: parsing never panics, and whatever parses
//! serialises to JSON that parses back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::{ClientFrame, parse_client_frame, parse_server_frame};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_client_frame(text) {
        Ok(frame) => {
            let again: ClientFrame = parse_client_frame(&frame.to_json())
                .unwrap_or_else(|e| panic!("re-parse of {text:?} failed: {e:?}"));
            assert_eq!(again, frame, "round trip of {text:?}");
        }
        Err(error) => {
            // Every refusal is a well-formed error reply.
            let reply: serde_json::Value = serde_json::from_str(&error.reply().to_json())
                .expect("error replies are JSON");
            assert!(reply["error"].is_string() && reply["code"].is_string());
        }
    }
    if let Ok(frame) = parse_server_frame(text) {
        let _ = format!("{frame:?}");
    }
});
