package main

import "fmt"

// connectRedlock makes a Redlock over three or more independent nodes.
func connectRedlock(urls []string, _ string) (*backend, error) {
	return nil, fmt.Errorf("%d Redis URLs given: Redlock over several nodes is not supported by this build yet; give one URL", len(urls))
}
