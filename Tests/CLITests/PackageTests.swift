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
