//! Fuzz target: any dial string through the default dial plan, and any text as a dial plan
//! file. Nothing may panic; a refusal must carry a SIP status and a reason.

#![no_main]

use std::path::Path;

use ivm_sipd::services::dial_plan::DialPlan;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let plan = DialPlan::embedded();
    if let Err(e) = plan.resolve(&text) {
        assert!((400..700).contains(&e.status()), "status {}", e.status());
        assert!(!e.reason().is_empty());
    }
    if let Ok(custom) = DialPlan::from_toml(&text, Path::new("fuzz.toml")) {
        for dialed in ["5551001", "98", "980000011", "555*1001*1002", "600"] {
            let _ = custom.resolve(dialed);
        }
    }
});
