// swift-tools-version:6.2
import PackageDescription

// Same upcoming features as Hummingbird's own Package.swift (ARCHITECTURE.md, convention 14).
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "chargepath",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "chargepath", targets: ["ChargepathCLI"]),
        // The benchmark's ceiling: a bare WebSocket OCPP-J echo on the same stack (Scripts/benchmark.sh).
        .executable(name: "chargepath-echo", targets: ["BenchEchoServer"]),
        .library(name: "OCPPCore", targets: ["OCPPCore"]),
        .library(name: "OCPP16", targets: ["OCPP16"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/swift-websocket.git", from: "1.6.2"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.9.0" ..< "5.0.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        // Already in the graph (SwiftNIO's Deque); Chargepath's deadlines use its Heap.
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        // The in-test central system that the simulator tests talk to.
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", from: "2.8.1"),
    ],
    targets: [
        // Pure protocol core: Foundation only.
        .target(name: "OCPPCore", swiftSettings: swiftSettings),
        .target(name: "OCPP16", dependencies: ["OCPPCore"], swiftSettings: swiftSettings),
        // Running a task on a NIO event loop (server charger messages, simulated chargers).
        .target(
            name: "EventLoopExecutor",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),
        // The open-file limit (each socket is one file): raised by the server and the simulator.
        .target(name: "ProcessLimits", swiftSettings: swiftSettings),
        // A charger as a charger sees it (never imports Chargepath*).
        .target(
            name: "ChargePointSimulator",
            dependencies: [
                "OCPPCore", "OCPP16", "EventLoopExecutor", "ProcessLimits",
                // WSClient cannot bind a local address nor report a refused upgrade's status and body,
                // so the client is built on NIOWebSocket's client upgrader directly.
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: swiftSettings
        ),
        // The domain: entities, handlers, ports, in-memory adapters.
        .target(
            name: "Chargepath",
            dependencies: [
                "OCPPCore", "OCPP16",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "HeapModule", package: "swift-collections"),
            ],
            swiftSettings: swiftSettings
        ),
        // Durable workflows: pure step functions (the runner comes with the Postgres adapter).
        .target(name: "ChargepathWorkflows", dependencies: ["Chargepath", "OCPPCore"], swiftSettings: swiftSettings),
        .target(
            name: "ChargepathPostgres",
            dependencies: [
                "Chargepath", "OCPP16", "ChargepathWorkflows",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                // MD5 of a meter reading's samples: its unique key (migration 0010).
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ChargepathServer",
            dependencies: [
                "Chargepath", "OCPPCore", "OCPP16", "ChargepathWorkflows", "EventLoopExecutor",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: swiftSettings
        ),
        // The composition root.
        .target(
            name: "ChargepathApp",
            dependencies: [
                "Chargepath", "ChargepathPostgres", "ChargepathServer", "ChargepathWorkflows", "ProcessLimits",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "ChargepathCLI",
            dependencies: [
                "ChargepathApp", "Chargepath", "ChargepathServer", "ChargepathPostgres", "ChargePointSimulator",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // chargepath-echo (benchmark only; nothing of Chargepath depends on it).
        .executableTarget(
            name: "BenchEchoServer",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "OCPPCoreTests", dependencies: ["OCPPCore"], swiftSettings: swiftSettings),
        .testTarget(name: "ChargepathWorkflowsTests", dependencies: ["ChargepathWorkflows", "Chargepath", "OCPPCore"], swiftSettings: swiftSettings),
        .testTarget(name: "OCPP16Tests", dependencies: ["OCPP16", "OCPPCore"], swiftSettings: swiftSettings),
        .testTarget(
            name: "ChargePointSimulatorTests",
            dependencies: [
                "ChargePointSimulator", "OCPPCore", "OCPP16", "ProcessLimits",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ChargepathAppTests",
            dependencies: [
                "ChargepathApp", "ChargepathPostgres", "ChargepathServer", "Chargepath", "ChargepathWorkflows", "OCPPCore", "ChargePointSimulator",
                "EventLoopExecutor", "ProcessLimits",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "WSClient", package: "swift-websocket"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            // The interop tests' Python charger (run by InteropTests, not built).
            exclude: ["Interop"],
            swiftSettings: swiftSettings
        ),
    ]
)
