fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("__exec") {
        outpost_agent::exec::exec_wrapper_main(&args[2..]);
    }
}
