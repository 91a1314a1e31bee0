//! `outpost-hub`: the hub daemon (`init`, `serve`) and the ops CLI.
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
