// dstore from C++ through dstore.hpp: the same steps as examples/c/quickstart.c, with RAII
// handles and exceptions instead of status codes.
//
//   c++ -std=c++17 -I include examples/cpp/quickstart.cpp -o quickstart
//       -L target/release -ldstore -Wl,-rpath,target/release
//   ./quickstart [ROOT]     # ROOT: the storage directory (default: a new temporary one)
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>

#include <unistd.h>

#include "dstore.hpp"

namespace {

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void expect(bool ok, const std::string& what) {
    if (!ok) {
        throw std::runtime_error("check failed: " + what);
    }
}

void run(const std::string& root) {
    // 1. Open a node; it closes (and unlocks the root) when `node` goes out of scope.
    dstore::Node node(dstore::Options().root(root));
    std::cout << "opened node " << node.id().substr(0, 16) << "...\n";

    // 2. One encrypted and one plain value, read back.
    node.store("notes/secret", std::string("meet at noon"));
    std::cout << "stored notes/secret (encrypted)\n";
    node.store("public/notice", std::string("hello, world"), /*encrypt=*/false);
    std::cout << "stored public/notice (plain)\n";
    for (const char* key : {"notes/secret", "public/notice"}) {
        std::string value = node.get_string(key);
        std::cout << "get " << key << " -> \"" << value << "\"\n";
    }
    expect(node.get_string("notes/secret") == "meet at noon", "notes/secret reads back");
    std::vector<std::uint8_t> bytes = node.get("public/notice");
    expect(std::string(bytes.begin(), bytes.end()) == "hello, world", "public/notice reads back");
    std::vector<std::uint8_t> part = node.get_range("public/notice", 7, 100);
    expect(std::string(part.begin(), part.end()) == "world", "a range of public/notice reads back");

    // 3. Keys, in byte order.
    std::vector<std::string> keys = node.keys();
    std::cout << "keys (" << keys.size() << "):\n";
    for (const std::string& key : keys) {
        std::cout << "  " << key << "\n";
    }
    expect(keys.size() == 2, "two keys");
    std::vector<std::string> page = node.list("notes/", "", 10);  // a page, by prefix
    expect(page.size() == 1 && page[0] == "notes/secret", "one key under notes/");

    // 4. has, remove, and the exception a missing key throws.
    std::cout << "has public/notice: " << (node.has("public/notice") ? "yes" : "no") << "\n";
    node.remove("public/notice");
    expect(!node.has("public/notice"), "public/notice is gone");
    try {
        node.get("public/notice");
        expect(false, "get of a deleted key throws");
    } catch (const dstore::NotFound& e) {
        std::cout << "get public/notice threw dstore::NotFound (" << e.what() << ")\n";
    }

    // 5. Files, streamed in and out.
    char in_path[] = "/tmp/dstore-quickstart-cpp-XXXXXX";
    int fd = mkstemp(in_path);
    expect(fd >= 0, "mkstemp");
    close(fd);
    const std::string out_path = std::string(in_path) + ".out";
    std::ofstream(in_path, std::ios::binary) << "a file's contents\n";
    node.store_file("files/example.txt", in_path);
    node.get_file("files/example.txt", out_path);
    bool same = read_file(out_path) == read_file(in_path);
    std::remove(in_path);
    std::remove(out_path.c_str());
    expect(same, "the file reads back");
    std::cout << "stored and fetched files/example.txt: identical\n";
}

}  // namespace

int main(int argc, char** argv) {
    std::string root;
    if (argc > 1) {
        root = argv[1];
    } else {
        char temp[] = "/tmp/dstore-quickstart-XXXXXX";
        if (mkdtemp(temp) == nullptr) {
            std::perror("mkdtemp");
            return EXIT_FAILURE;
        }
        root = temp;
    }
    std::cout << "dstore " << dstore::version() << " (header " << DSTORE_VERSION
              << "), storage root " << root << "\n";
    try {
        run(root);
    } catch (const dstore::Error& e) {
        std::cerr << "dstore error " << e.status() << ": " << e.what() << "\n";
        return EXIT_FAILURE;
    } catch (const std::exception& e) {
        std::cerr << e.what() << "\n";
        return EXIT_FAILURE;
    }
    std::cout << "all done\n";
    return EXIT_SUCCESS;
}
