"""The simulated robot fleet: an API client application (robots that ask the API for their model
version, play real episodes and report telemetry). It sits above the API and the tasks it uses."""
