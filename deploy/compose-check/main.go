// Command compose-check loads compose files the way `docker compose config` does, with the
// same library (compose-go): the Compose Specification's JSON schema, interpolation,
// normalisation and the consistency checks (services named in depends_on exist, volumes
// and networks are declared, ...). It prints the resolved model and exits non-zero on the
// first problem. Used where no Docker Compose plugin is installed (CI, development
// machines without Docker).
//
//	go run ./deploy/compose-check compose.yaml
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: compose-check FILE [FILE...]")
		os.Exit(2)
	}
	options, err := cli.NewProjectOptions(
		os.Args[1:],
		cli.WithOsEnv,
		cli.WithDotEnv,
		cli.WithConsistency(true),
		cli.WithNormalization(true),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		fail(err)
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		fail(err)
	}
	model, err := project.MarshalYAML()
	if err != nil {
		fail(err)
	}
	os.Stdout.Write(model)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "compose-check:", err)
	os.Exit(1)
}
