import Foundation
import Testing
import TestSupport

@testable import Engine

/// The release artifacts `scripts/package` builds into dist/ (scripts/test builds them first): they
/// install and run on a host without Swift.
@Suite("Release artifacts", .serialized)
struct PackageTests {
    static let dist = Stack.repo.appendingPathComponent("dist").path

    func artifact(_ name: String) throws -> String {
        let path = PackageTests.dist + "/" + name
        try #require(FileManager.default.fileExists(atPath: path), "\(path) is missing: scripts/package builds it (scripts/test runs it before the tests)")
        return path
    }

    /// Runs a command; returns its exit status and its standard output and error together.
    func sh(_ argv: [String], environment: [String: String]? = nil) throws -> (Int32, String) {
        let dir = TempDir("sh")
        let p = try ChildProcess(argv[0], Array(argv.dropFirst()), environment: environment ?? ProcessInfo.processInfo.environment, stderrPath: dir.sub("err"))
        let out = p.readAll()
        let end = p.wait()
        return (end.exited ? end.code : 128 + end.code, out + ((try? String(contentsOfFile: dir.sub("err"), encoding: .utf8)) ?? ""))
    }

    /// The binary links no Swift runtime: only C libraries a Debian host has.
    func expectStandalone(_ binary: String) throws {
        let (code, libraries) = try sh(["/usr/bin/ldd", binary])
        #expect(code == 0, "\(libraries)")
        #expect(!libraries.contains("libswift") && !libraries.contains("libFoundation") && !libraries.contains("libdispatch"), "\(libraries)")
        #expect(libraries.contains("liblmdb") && libraries.contains("libcurl"), "the C libraries are the system's: \(libraries)")
    }

    @Test func theDebInstallsIntoAScratchRootAndRuns() throws {
        let deb = try artifact("cloudtrailbeat_\(Release.version)_amd64.deb")
        let root = TempDir("deb-root")
        #expect(try sh(["/usr/bin/dpkg-deb", "-x", deb, root.path]).0 == 0)
        let binary = root.sub("usr/bin/cloudtrailbeat")
        try expectStandalone(binary)
        let (v, version) = try sh([binary, "version"])
        #expect(v == 0 && version == "cloudtrailbeat \(Release.version)\n", "\(version)")
        // Its configuration checks out, with its data under /var/lib/cloudtrailbeat (no AWS is reached:
        // credentials from the environment, instance metadata off).
        var env = ProcessInfo.processInfo.environment
        env["AWS_ACCESS_KEY_ID"] = "AKIAPACKAGETEST"
        env["AWS_SECRET_ACCESS_KEY"] = "package"
        env["AWS_EC2_METADATA_DISABLED"] = "true"
        let (t, check) = try sh([binary, "test", "config", "-c", root.sub("etc/cloudtrailbeat/cloudtrailbeat.yml")], environment: env)
        #expect(t == 0 && check.contains("config OK"), "\(check)")
        #expect(check.contains("journal.path: /var/lib/cloudtrailbeat/journal") && check.contains("path /var/lib/cloudtrailbeat/events"), "\(check)")
        #expect(check.contains("credentials: environment, access key AKIA") && !check.contains("AKIAPACKAGETEST"), "the key is masked: \(check)")
        // Control data: what it depends on, its conffile, the user and directory its scripts make.
        let (_, fields) = try sh(["/usr/bin/dpkg-deb", "-f", deb, "Package", "Version", "Architecture", "Depends"])
        #expect(fields.contains("Package: cloudtrailbeat") && fields.contains("Version: \(Release.version)") && fields.contains("liblmdb0"), "\(fields)")
        let control = TempDir("deb-control")
        #expect(try sh(["/usr/bin/dpkg-deb", "-e", deb, control.path]).0 == 0)
        #expect((try String(contentsOfFile: control.sub("conffiles"), encoding: .utf8)) == "/etc/cloudtrailbeat/cloudtrailbeat.yml\n")
        let postinst = try String(contentsOfFile: control.sub("postinst"), encoding: .utf8)
        #expect(postinst.contains("adduser --system") && postinst.contains("/var/lib/cloudtrailbeat"))
        // The unit names the installed binary and passes systemd's own check (pointed at the extracted one).
        let unit = try String(contentsOfFile: root.sub("lib/systemd/system/cloudtrailbeat.service"), encoding: .utf8)
        #expect(unit.contains("ExecStart=/usr/bin/cloudtrailbeat -c /etc/cloudtrailbeat/cloudtrailbeat.yml") && unit.contains("User=cloudtrailbeat"))
        if let analyze = LocalServer.which("systemd-analyze") {
            let copy = root.sub("cloudtrailbeat.service")
            try unit.replacingOccurrences(of: "ExecStart=/usr/bin/cloudtrailbeat", with: "ExecStart=\(binary)").write(toFile: copy, atomically: true, encoding: .utf8)
            let (code, out) = try sh([analyze, "verify", copy])
            #expect(code == 0, "systemd-analyze verify: \(out)")
        }
    }

    static let unit = Stack.repo.appendingPathComponent("docs/deploy/cloudtrailbeat.service").path

    /// The unit's sandbox as systemd rates it: `systemd-analyze security --offline=true` (Debian's
    /// systemd) calls it OK, exposure at most 2.0 (it is 1.2; the old unit was 8.5 EXPOSED).
    @Test func theUnitIsSandboxed() throws {
        let analyze = try #require(LocalServer.which("systemd-analyze"), "systemd-analyze is missing: Debian's systemd package (scripts/setup installs it)")
        let (code, out) = try sh([analyze, "security", "--offline=true", "--no-pager", PackageTests.unit])
        #expect(code == 0, "\(out)")
        let line = try #require(out.split(separator: "\n").first { $0.contains("Overall exposure level for cloudtrailbeat.service: ") }, "\(out)")
        let verdict = line.components(separatedBy: "cloudtrailbeat.service: ")[1].split(separator: " ")
        let score = try #require(Double(verdict[0]), "\(line)")
        #expect(score <= 2.0 && verdict[1] == "OK", "\(line)\n\(out)")
        let text = try String(contentsOfFile: PackageTests.unit, encoding: .utf8)
        for directive in [
            "CapabilityBoundingSet=\n", "AmbientCapabilities=\n", "NoNewPrivileges=true", "UMask=0077", "LimitCORE=0", "PrivateDevices=true",
            "ProtectKernelTunables=true", "ProtectKernelModules=true", "ProtectKernelLogs=true", "ProtectControlGroups=true",
            "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "SystemCallFilter=@system-service", "SystemCallArchitectures=native",
            "MemoryDenyWriteExecute=true", "ProtectSystem=strict", "ReadWritePaths=/var/lib/cloudtrailbeat", "RestartPreventExitStatus=65",
        ] {
            #expect(text.contains(directive), "the unit sets \(directive)")
        }
    }

    /// The binary works inside that sandbox: scripts/unit_sandbox.py puts the unit's system call filter
    /// (refused calls fail with EPERM), its address families (no netlink for getaddrinfo), W^X memory
    /// (PR_SET_MDWE, what MemoryDenyWriteExecute refuses), NoNewPrivileges and LimitCORE on itself, checks
    /// they hold, and runs a local backfill into the file output, `journal status`, and `test output`
    /// against a TLS server named `localhost` (libcurl, OpenSSL, name resolution).
    @Test func theBinaryRunsInsideTheUnitsSandbox() throws {
        let arch = try sh(["/usr/bin/uname", "-m"]).1.trimmingCharacters(in: .whitespacesAndNewlines)
        guard arch == "x86_64" else { return }  // system call numbers are read for x86_64 only
        let dir = TempDir("sandbox")
        try writeLog(dir.sub("logs/AWSLogs/111111111111/CloudTrail/us-east-1/2026/11/26/111111111111_CloudTrail_us-east-1_20261126T0000Z_s.json.gz"), tag: "s", count: 40)
        let sandbox = [Stack.repo.appendingPathComponent("scripts/unit_sandbox.py").path, PackageTests.unit]
        var env = ProcessInfo.processInfo.environment
        env["SWIFT_BACKTRACE"] = "enable=no"
        #expect(try sh(["/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", dir.sub("key.pem"), "-out", dir.sub("cert.pem"),
                        "-days", "1", "-subj", "/CN=localhost"]).0 == 0)
        let port = freePort()
        let tls = try LocalServer(["openssl", "s_server", "-accept", "127.0.0.1:\(port)", "-cert", dir.sub("cert.pem"), "-key", dir.sub("key.pem"), "-www"],
                                  port: port, name: "tls", installHint: "openssl is needed")
        defer { _ = tls }
        let config = dir.sub("c.yml")
        try "journal:\n  path: \(dir.sub("journal"))\noutput:\n  file:\n    path: \(dir.sub("out"))\n".write(toFile: config, atomically: true, encoding: .utf8)
        let probe = dir.sub("probe.yml")
        try "journal:\n  path: \(dir.sub("j2"))\noutput:\n  elasticsearch:\n    hosts: [\"https://localhost:\(port)\"]\n    ssl:\n      certificate_authorities: [\"\(dir.sub("cert.pem"))\"]\n"
            .write(toFile: probe, atomically: true, encoding: .utf8)

        let (ran, runLog) = try sh(["/usr/bin/python3"] + sandbox + [binary(), "-c", config, "-b", dir.sub("logs"), "--drain"], environment: env)
        #expect(ran == 0 && runLog.contains("system calls allowed") && runLog.contains("file 40 delivered"), "\(runLog)")
        let shipped = (try? String(contentsOfFile: dir.sub("out/cloudtrailbeat.ndjson"), encoding: .utf8)) ?? ""
        #expect(shipped.split(separator: "\n").count == 40)
        let (status, statusText) = try sh(["/usr/bin/python3"] + sandbox + [binary(), "journal", "status", "-c", config], environment: env)
        #expect(status == 0 && statusText.contains("done 1"), "\(statusText)")
        let (probed, probeText) = try sh(["/usr/bin/python3"] + sandbox + [binary(), "test", "output", "-c", probe], environment: env)
        #expect(probed == 0 && probeText.contains("https://localhost:\(port): OK"), "\(probeText)")
    }

    @Test func theTarballRuns() throws {
        let arch = try sh(["/usr/bin/uname", "-m"]).1.trimmingCharacters(in: .whitespacesAndNewlines)
        let tarball = try artifact("cloudtrailbeat-\(Release.version)-linux-\(arch).tar.gz")
        let dir = TempDir("tarball")
        #expect(try sh(["/usr/bin/tar", "-C", dir.path, "-xzf", tarball]).0 == 0)
        let top = dir.sub("cloudtrailbeat-\(Release.version)-linux-\(arch)")
        try expectStandalone(top + "/cloudtrailbeat")
        #expect(try sh([top + "/cloudtrailbeat", "--version"]).1 == "cloudtrailbeat \(Release.version)\n")
        for file in ["cloudtrailbeat.example.yml", "cloudtrailbeat.service", "README.md", "docs/operations.md", "docs/codecs.md"] {
            #expect(FileManager.default.fileExists(atPath: top + "/" + file), "\(file) is in the tarball")
        }
    }
}
