import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Makes the child close every descriptor above stderr before it runs.
///
/// Tests run in parallel: a descriptor another test has open without `O_CLOEXEC` at the instant of a
/// spawn (Foundation's atomic write opens its temporary file so) would otherwise live on in a server for
/// its whole life; a script written that way then fails to run with ETXTBSY, and a pipe's write end
/// kept by a stranger never reports end of file. Glibc's `posix_spawn_file_actions_addclosefrom_np`
/// (2.34) does it; Swift's Glibc module does not import it, so it is looked up once.
public func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t) {
    precondition(addCloseFrom(&actions, 3) == 0, "posix_spawn_file_actions_addclosefrom_np failed")
}

private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
private let addCloseFrom: AddCloseFrom = {
    guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else {
        fatalError("glibc 2.34 or later is needed (posix_spawn_file_actions_addclosefrom_np)")
    }
    return unsafeBitCast(symbol, to: AddCloseFrom.self)
}()

/// A child process started with posix_spawn, its stdout on a pipe; waited for with waitpid.
/// (Foundation's Process can hang in waitUntilExit after the child is SIGKILLed on Linux.)
public final class ChildProcess {
    public let pid: pid_t
    private let stdoutFD: Int32

    public init(_ executable: String, _ arguments: [String], environment: [String: String]? = nil, stderrPath: String? = nil) throws {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw POSIXError(.EIO) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        if let stderrPath { posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_APPEND, 0o644) }
        closeInheritedDescriptors(&actions)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let env = (environment ?? ProcessInfo.processInfo.environment).map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { env.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, executable, &actions, nil, argv, env)
        close(fds[1])
        guard rc == 0 else {
            close(fds[0])
            throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EIO)
        }
        pid = child
        stdoutFD = fds[0]
    }

    public func kill(_ signal: Int32 = SIGKILL) { _ = Glibc.kill(pid, signal) }

    /// Waits for the child; returns (exited normally, exit code or signal number).
    public func wait() -> (exited: Bool, code: Int32) {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let termsig = status & 0x7f
        return termsig == 0 ? (true, (status >> 8) & 0xff) : (false, termsig)
    }

    /// Waits up to `timeout` seconds for the child to end by itself; nil (and the child SIGKILLed and
    /// reaped) when it had not. Its stdout must not fill meanwhile (send it to a file, or read it after).
    public func wait(timeout: Double) -> (exited: Bool, code: Int32)? {
        let deadline = Date().addingTimeInterval(timeout)
        var status: Int32 = 0
        while Date() < deadline {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid {
                let termsig = status & 0x7f
                return termsig == 0 ? (true, (status >> 8) & 0xff) : (false, termsig)
            }
            if r < 0 && errno != EINTR { return nil }
            usleep(50_000)
        }
        kill()
        _ = wait()
        return nil
    }

    /// Everything the child wrote to stdout until it closed (call after it exited).
    public func readAll() -> String {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(stdoutFD, &buffer, buffer.count)
            if n <= 0 { break }
            out += buffer[..<n]
        }
        close(stdoutFD)
        return String(decoding: out, as: UTF8.self)
    }
}
