fn main() -> std::process::ExitCode {
    scimgate::cli::main()
}
