//! `outpost-hub`: the hub daemon (`init`, `serve`) and the ops CLI.

// mimalloc, as the agent: with glibc's malloc the hub's heap is spread over one arena per
// thread (up to 16 on 2 cores; the blocking pool runs hundreds of store calls at once while
// thousands of agents connect) and stays fragmented: 10,000 connected agents cost well over
// 0.5 GiB of RSS (docs/BENCHMARKS.md, "10,000 agents per hub").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
fn main() -> std::process::ExitCode {
    // `outpost-hub dev` (the `dev` feature) runs an agent in this process; its resource-limits
    // wrapper re-executes this binary as `outpost-hub __exec ...`.
    #[cfg(feature = "dev")]
    {
        let args: Vec<String> = std::env::args().collect();
        if args.get(1).map(String::as_str) == Some("__exec") {
            outpost_agent::exec::exec_wrapper_main(&args[2..]);
        }
    }
    outpost_hub::cli::main()
}
