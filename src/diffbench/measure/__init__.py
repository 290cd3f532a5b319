"""Instruments: timing, stage timers, telemetry, compile watch, quality, FLOPs, boundness, pairing, scaling
fits; no orchestration."""
