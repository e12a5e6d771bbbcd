// The app every ko-matrix cell builds and pushes: no dependencies, so building it needs no
// module download.
package main

import "fmt"

func main() {
	fmt.Println("hello from a ko-matrix cell")
}
