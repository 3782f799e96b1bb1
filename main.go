// Command fossil is an event store for CloudEvents on PostgreSQL.
package main

import (
	"context"
	"os"

	"github.com/fossil-events/fossil/cmd"
)

func main() {
	os.Exit(cmd.Main(context.Background(), os.Args[1:]))
}
