//! Configuration: defaults -> YAML file or options.json -> environment -> CLI, validated into `Config`.
