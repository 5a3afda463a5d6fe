package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/redis/go-redis/v9"
)

// environment describes the machine and the software measured.
type environment struct {
	CPUs                  int
	GOMAXPROCS            int
	CPUModel              string
	GoVersion             string
	OSArch                string
	RedisVersion          string
	RedisBenchmarkVersion string
	Libraries             []string // "module version" lines
	Distlock              string   // commit of the library measured
	LoadBefore            string
	LoadAfter             string
}

func probeEnvironment(ctx context.Context, admin *redis.Client) (environment, error) {
	env := environment{
		CPUs:       runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		CPUModel:   cpuModel(),
		GoVersion:  runtime.Version(),
		OSArch:     runtime.GOOS + "/" + runtime.GOARCH,
		LoadBefore: loadAverage(),
	}
	info, err := admin.Info(ctx, "server").Result()
	if err != nil {
		return env, fmt.Errorf("INFO server: %w", err)
	}
	env.RedisVersion = infoField(info, "redis_version")
	if out, err := exec.CommandContext(ctx, "redis-benchmark", "--version").Output(); err == nil {
		env.RedisBenchmarkVersion = strings.TrimSpace(string(out))
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			switch d.Path {
			case "github.com/bsm/redislock", "github.com/go-redsync/redsync/v4", "github.com/redis/go-redis/v9":
				env.Libraries = append(env.Libraries, d.Path+" "+d.Version)
			case "github.com/distlock/distlock":
				env.Distlock = d.Path + " (this repository, replace => ../)"
			}
		}
	}
	if env.Distlock == "" {
		env.Distlock = "github.com/distlock/distlock (this repository)"
	}
	if out, err := exec.CommandContext(ctx, "git", "-C", "..", "log", "-1", "--format=%h %s").Output(); err == nil {
		env.Distlock += ", commit " + strings.TrimSpace(string(out))
		dirty, err := exec.CommandContext(ctx, "git", "-C", "..", "status", "--porcelain", "--untracked-files=no",
			"--", ".", ":(exclude)bench").Output()
		if err == nil && len(strings.TrimSpace(string(dirty))) > 0 {
			env.Distlock += " (plus uncommitted changes in the working tree)"
		}
	}
	return env, nil
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
