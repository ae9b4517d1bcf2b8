// Command demo shows orgperm working against a real PostgreSQL.
package main

import "fmt"

func main() {
	fmt.Println("orgperm demo: not built yet (see issue 5)")
}
