// The seed example the submit page starts with (its tests locate paths in the same text).
export const SEED = `apiVersion: v1
dagName: "cache-test"
tasks:
  - name: "generate-data"
    image: "ubuntu:latest"
    command: ["/bin/bash", "-c", "echo 'test data' > /artifacts/output.txt"]
    outputs: ["output.txt"]
  - name: "process-data"
    image: "ubuntu:latest"
    depends_on: ["generate-data"]
    command: ["/bin/bash", "-c", "cat /artifacts/input.txt"]
    inputs:
      - fromTask: "generate-data"
        name: "input.txt"
`;
