//! `outpost-agent`: the edge agent binary. Wires the CLI to the library; see `lib.rs`.

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // Hidden: the resource-limits wrapper re-executes the agent as `outpost-agent __exec ...`.
    if args.get(1).map(String::as_str) == Some("__exec") {
        outpost_agent::exec::exec_wrapper_main(&args[2..]);
    }
    outpost_agent::app::main()
}
